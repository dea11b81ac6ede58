{#
    Retired Fabric ids and the id that replaced them: when clusters merge (a prospect signs up
    and links to a CRM customer), the cluster keeps one id and the others become aliases, so a
    system holding an old id can still find the customer.

    Append-and-repoint: aliases are never dropped (`full_refresh: false`), an alias whose
    target is itself retired later is re-pointed to the current id, and an id that is in use
    again is no alias (post-hook).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='alias_id',
        full_refresh=false,
        post_hook=[
            "delete from {{ this }} where alias_id in "
            ~ "(select fabric_customer_id from {{ ref('customer_xref') }})"
        ]
    )
}}

with

xref as (

    select * from {{ ref('customer_xref') }}

),

current_ids as (

    select distinct fabric_customer_id from xref

),

-- Ids held before that no record holds now, each with the id that took over most of its records.
newly_retired_ids as (

    select
        xref.previous_fabric_customer_id as alias_id,
        xref.fabric_customer_id,
        count(*) as records_taken_over
    from xref
    anti join current_ids as current
        on xref.previous_fabric_customer_id = current.fabric_customer_id
    where xref.previous_fabric_customer_id is not null
    group by xref.previous_fabric_customer_id, xref.fabric_customer_id
    qualify row_number() over (
        partition by alias_id order by records_taken_over desc, xref.fabric_customer_id
    ) = 1

),

existing_aliases as (

    {% if is_incremental() %}
    select alias_id, fabric_customer_id, aliased_at from {{ this }}
    {% else %}
    select
        cast(null as varchar) as alias_id,
        cast(null as varchar) as fabric_customer_id,
        cast(null as timestamp) as aliased_at
    where false
    {% endif %}

),

all_aliases as (

    select
        coalesce(existing.alias_id, retired.alias_id) as alias_id,
        coalesce(retired.fabric_customer_id, existing.fabric_customer_id) as fabric_customer_id,
        coalesce(
            existing.aliased_at,
            cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as timestamp)
        ) as aliased_at
    from existing_aliases as existing
    full outer join newly_retired_ids as retired
        on existing.alias_id = retired.alias_id

),

repointed as (

    select
        alias.alias_id,
        coalesce(retired_target.fabric_customer_id, alias.fabric_customer_id)
            as fabric_customer_id,
        alias.aliased_at
    from all_aliases as alias
    left join newly_retired_ids as retired_target
        on alias.fabric_customer_id = retired_target.alias_id

)

select * from repointed
