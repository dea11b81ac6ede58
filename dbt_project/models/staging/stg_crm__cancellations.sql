with

source as (

    select * from {{ source('raw', 'crm__cancellations') }}

),

renamed as (

    select
        cast(cancellation_id as bigint) as cancellation_id,
        cast(crm_id as bigint) as crm_customer_id,
        cast(cancelled_on as date) as cancelled_on,
        reason,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
