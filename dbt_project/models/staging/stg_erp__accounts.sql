with

source as (

    select * from {{ source('raw', 'erp__accounts') }}

),

renamed as (

    select
        trim(cast(account_no as varchar)) as account_no,
        account_name,
        email,
        phone,
        trim(street) as street,
        trim(cast(postal_code as varchar)) as postal_code,
        trim(city) as city,
        upper(trim(country_code)) as country_code,
        cast(opened_on as date) as opened_on,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
