with

source as (

    select * from {{ source('raw', 'erp__payments') }}

),

renamed as (

    select
        trim(cast(payment_id as varchar)) as payment_id,
        trim(cast(invoice_no as varchar)) as invoice_no,
        trim(cast(account_no as varchar)) as account_no,
        cast(paid_on as date) as paid_on,
        cast(amount as decimal(12, 2)) as amount,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
