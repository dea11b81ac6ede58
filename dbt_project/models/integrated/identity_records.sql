-- One row per record of every system that describes a person, with normalised identity
-- attributes: CRM customers, ERP accounts, support requesters (from their tickets) and web users
-- (from their events). Built from all raw rows: identity is current state.
with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

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

crm_member_partitions as (

    select crm_customer_id, partition_date from crm_customer_versions
    union all
    select crm_customer_id, partition_date from crm_contacts

),

crm_partition_range as (

    select
        crm_customer_id,
        min(partition_date) as first_seen_partition,
        max(partition_date) as last_seen_partition
    from crm_member_partitions
    group by crm_customer_id

),

crm_records as (

    select
        'crm' as system,
        cast(customer.crm_customer_id as varchar) as source_key,
        customer.first_name,
        customer.last_name,
        {{ normalise_email('customer.email') }} as email,
        {{ normalise_phone('customer.phone') }} as phone,
        customer.street,
        customer.postal_code,
        partition_range.first_seen_partition,
        partition_range.last_seen_partition
    from crm_customers as customer
    inner join crm_partition_range as partition_range
        on customer.crm_customer_id = partition_range.crm_customer_id

),

latest_erp_accounts as (

    select *
    from erp_accounts
    qualify row_number() over (
        partition by account_no order by partition_date desc, load_id desc
    ) = 1

),

erp_partition_range as (

    select
        account_no,
        min(partition_date) as first_seen_partition,
        max(partition_date) as last_seen_partition
    from erp_accounts
    group by account_no

),

erp_records as (

    select
        'erp' as system,
        account.account_no as source_key,
        {{ first_name_of('account.account_name') }} as first_name,
        {{ last_name_of('account.account_name') }} as last_name,
        {{ normalise_email('account.email') }} as email,
        {{ normalise_phone('account.phone') }} as phone,
        account.street,
        account.postal_code,
        partition_range.first_seen_partition,
        partition_range.last_seen_partition
    from latest_erp_accounts as account
    inner join erp_partition_range as partition_range
        on account.account_no = partition_range.account_no

),

support_ticket_identities as (

    select
        requester_id,
        opened_at,
        partition_date,
        nullif(trim(requester_name), '') as full_name,
        {{ normalise_email('requester_email') }} as email,
        {{ normalise_phone('requester_phone') }} as phone
    from support_tickets
    where requester_id is not null

),

-- A requester's details are those of their latest ticket that has them.
support_requesters as (

    select
        requester_id,
        arg_max(full_name, opened_at) filter (where full_name is not null) as full_name,
        arg_max(email, opened_at) filter (where email is not null) as email,
        arg_max(phone, opened_at) filter (where phone is not null) as phone,
        min(partition_date) as first_seen_partition,
        max(partition_date) as last_seen_partition
    from support_ticket_identities
    group by requester_id

),

support_records as (

    select
        'support' as system,
        requester_id as source_key,
        {{ first_name_of('full_name') }} as first_name,
        {{ last_name_of('full_name') }} as last_name,
        email,
        phone,
        cast(null as varchar) as street,
        cast(null as varchar) as postal_code,
        first_seen_partition,
        last_seen_partition
    from support_requesters

),

-- Events repeat the same user details: reduce to distinct details before normalising them.
web_user_details as (

    select
        user_id,
        user_name,
        user_email,
        max(event_ts) as last_seen_at,
        min(partition_date) as first_seen_partition,
        max(partition_date) as last_seen_partition
    from web_events
    where user_id is not null
    group by user_id, user_name, user_email

),

-- A web user's details are those of their latest event that has them.
web_users as (

    select
        user_id,
        arg_max(nullif(trim(user_name), ''), last_seen_at)
            filter (where nullif(trim(user_name), '') is not null) as full_name,
        arg_max({{ normalise_email('user_email') }}, last_seen_at)
            filter (where {{ normalise_email('user_email') }} is not null) as email,
        min(first_seen_partition) as first_seen_partition,
        max(last_seen_partition) as last_seen_partition
    from web_user_details
    group by user_id

),

web_records as (

    select
        'web' as system,
        user_id as source_key,
        {{ first_name_of('full_name') }} as first_name,
        {{ last_name_of('full_name') }} as last_name,
        email,
        cast(null as varchar) as phone,
        cast(null as varchar) as street,
        cast(null as varchar) as postal_code,
        first_seen_partition,
        last_seen_partition
    from web_users

),

all_records as (

    select * from crm_records
    union all by name
    select * from erp_records
    union all by name
    select * from support_records
    union all by name
    select * from web_records

),

keyed as (

    select
        system,
        source_key,
        first_name,
        last_name,
        {{ name_key('first_name') }} as first_name_key,
        {{ name_key('last_name') }} as last_name_key,
        email,
        phone,
        {{ street_key('street') }} as street_key,
        {{ house_number('street') }} as house_number,
        {{ postal_key('postal_code') }} as postal_key,
        first_seen_partition,
        last_seen_partition
    from all_records

)

select * from keyed
