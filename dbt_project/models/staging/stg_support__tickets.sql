with

source as (

    select * from {{ source('raw', 'support__tickets') }}

),

renamed as (

    select
        trim(ticket_id) as ticket_id,
        opened_at,
        trim(requester_id) as requester_id,
        requester_name,
        requester_email,
        requester_phone,
        lower(trim(channel)) as channel,
        lower(trim(category)) as category,
        subject,
        description,
        lower(trim(priority)) as priority,
        cast(satisfaction as integer) as satisfaction,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
