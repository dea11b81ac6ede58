-- Every normalised email and phone seen for each record, in any of its rows: all versions of a
-- CRM customer plus its contacts, an ERP account, all tickets of a requester, all events of a
-- web user. Matching compares these sets, so an address used once still counts.
with

crm_customer_versions as (

    select * from {{ ref('stg_crm__customer_versions') }}

),

crm_contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

erp_accounts as (

    select * from {{ ref('stg_erp__accounts') }}

),

support_tickets as (

    select * from {{ ref('stg_support__tickets') }}

),

web_events as (

    select * from {{ ref('stg_web__events') }}

),

raw_values as (

    select 'crm' as system, cast(crm_customer_id as varchar) as source_key,
        'email' as kind, {{ normalise_email('email') }} as value
    from crm_customer_versions
    union all
    select 'crm', cast(crm_customer_id as varchar), 'phone', {{ normalise_phone('phone') }}
    from crm_customer_versions
    union all
    select 'crm', cast(crm_customer_id as varchar), kind,
        case kind
            when 'email' then {{ normalise_email('value') }}
            when 'phone' then {{ normalise_phone('value') }}
        end
    from crm_contacts
    union all
    select 'erp', account_no, 'email', {{ normalise_email('email') }}
    from erp_accounts
    union all
    select 'erp', account_no, 'phone', {{ normalise_phone('phone') }}
    from erp_accounts
    union all
    select 'support', requester_id, 'email', {{ normalise_email('requester_email') }}
    from support_tickets
    union all
    select 'support', requester_id, 'phone', {{ normalise_phone('requester_phone') }}
    from support_tickets
    union all
    select 'web', user_id, 'email', {{ normalise_email('user_email') }}
    from (select distinct user_id, user_email from web_events)

),

distinct_values as (

    select distinct system, source_key, kind, value
    from raw_values
    where source_key is not null and value is not null

)

select * from distinct_values
