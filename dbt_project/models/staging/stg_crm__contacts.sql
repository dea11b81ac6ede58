with

source as (

    select * from {{ source('raw', 'crm__contacts') }}

),

renamed as (

    select
        cast(contact_id as bigint) as contact_id,
        cast(crm_id as bigint) as crm_customer_id,
        lower(trim(kind)) as kind,
        value,
        created_at,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
