with

source as (

    select * from {{ source('raw', 'erp__invoices') }}

),

renamed as (

    select
        trim(cast(invoice_no as varchar)) as invoice_no,
        trim(cast(account_no as varchar)) as account_no,
        cast(invoice_date as date) as invoice_date,
        cast(due_date as date) as due_date,
        cast(amount as decimal(12, 2)) as amount,
        upper(trim(currency)) as currency,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
