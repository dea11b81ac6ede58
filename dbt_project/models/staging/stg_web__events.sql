with

source as (

    select * from {{ source('raw', 'web__events') }}

),

renamed as (

    select
        event_id,
        event_ts,
        lower(event_type) as event_type,
        user_id,
        user_email,
        user_name,
        device_os,
        app_version,
        props,
        _fabric_partition as partition_date,
        _fabric_load_id as load_id

    from source

)

select * from renamed
