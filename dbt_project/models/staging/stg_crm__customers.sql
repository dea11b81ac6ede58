-- CRM customers, current state: the latest ingested version of each crm_customer_id.
with

source as (

    select * from {{ ref('stg_crm__customer_versions') }}

),

latest_version as (

    select *
    from source
    qualify row_number() over (
        partition by crm_customer_id
        order by updated_at desc nulls last, partition_date desc, loaded_at desc
    ) = 1

)

select * from latest_version
