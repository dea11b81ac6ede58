-- One row per Fabric customer: a CRM customer (the system of record) with its attributes in
-- normalised form and the systems its records come from. Prospects (clusters without a CRM
-- customer) are in customer_xref only: they have no CRM key to publish to and are not scored.
with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

xref as (

    select * from {{ ref('customer_xref') }}

),

country_aliases as (

    select * from {{ ref('country_aliases') }}

),

customer_clusters as (

    select
        fabric_customer_id,
        string_agg(distinct system, ',' order by system) as systems,
        max(last_seen_partition) as updated_partition
    from xref
    group by fabric_customer_id

),

crm_xref as (

    select
        cast(source_key as bigint) as crm_customer_id,
        fabric_customer_id
    from xref
    where system = 'crm'

),

customers as (

    select
        crm_xref.fabric_customer_id,
        customer.crm_customer_id,
        customer.first_name,
        customer.last_name,
        {{ normalise_email('customer.email') }} as email,
        {{ normalise_phone('customer.phone') }} as phone,
        customer.street,
        customer.postal_code,
        customer.city,
        country.country_code,
        customer.plan,
        customer.monthly_fee,
        customer.signup_date,
        cluster.systems,
        cluster.updated_partition
    from crm_customers as customer
    inner join crm_xref
        on customer.crm_customer_id = crm_xref.crm_customer_id
    inner join customer_clusters as cluster
        on crm_xref.fabric_customer_id = cluster.fabric_customer_id
    left join country_aliases as country
        on {{ country_alias_key('customer.country') }} = country.alias

)

select * from customers
