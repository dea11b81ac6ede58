-- Every version of every CRM customer that Fabric has ingested (one per updated_at partition).
with

source as (

    select * from {{ source('raw', 'crm__customers') }}

),

renamed as (

    select
        cast(crm_id as bigint) as crm_customer_id,
        trim(first_name) as first_name,
        trim(last_name) as last_name,
        email,
        phone,
        trim(street) as street,
        trim(postal_code) as postal_code,
        trim(city) as city,
        country,
        lower(trim(plan)) as plan,
        cast(monthly_fee as decimal(10, 2)) as monthly_fee,
        created_at,
        updated_at,
        cast(created_at as date) as signup_date,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id,
        _fabric_loaded_at as loaded_at

    from source

)

select * from renamed
