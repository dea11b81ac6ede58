{#
    Which Fabric customer each record of each system belongs to, with ids stable across runs.

    Incremental only so that it can read its previous state ({{ this }}): every run replaces
    every row (delete+insert on `system` covers all of them), and `full_refresh: false` keeps
    `--full-refresh` from wiping the ids that business systems have already received.

    Id assignment: a cluster keeps the oldest id any of its members held in the previous run
    (an id is as old as the earliest first-seen partition of its holders). An id claimed by
    several clusters after a split stays with the cluster holding most of its records. A cluster
    without an id gets 'FC-' + the first 12 hex digits of md5(anchor), the anchor being the
    CRM customer ('crm:<crm_id>') or the prospect cluster's smallest 'system:key'.
    `previous_fabric_customer_id` is the id a record held before its latest change of id (kept
    across runs); `customer_id_aliases` turns retired ids into aliases from it.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='system',
        full_refresh=false,
        on_schema_change='append_new_columns'
    )
}}

with

members as (

    select * from {{ ref('identity_clusters') }}

),

previous_xref as (

    {% if is_incremental() %}
    select
        system,
        source_key,
        fabric_customer_id,
        previous_fabric_customer_id,
        first_seen_partition
    from {{ this }}
    {% else %}
    select
        cast(null as varchar) as system,
        cast(null as varchar) as source_key,
        cast(null as varchar) as fabric_customer_id,
        cast(null as varchar) as previous_fabric_customer_id,
        cast(null as date) as first_seen_partition
    where false
    {% endif %}

),

id_ages as (

    select
        fabric_customer_id,
        min(first_seen_partition) as id_first_seen
    from previous_xref
    group by fabric_customer_id

),

id_claims as (

    select
        member.cluster_anchor,
        previous.fabric_customer_id,
        count(*) as holders
    from members as member
    inner join previous_xref as previous
        on member.system = previous.system
        and member.source_key = previous.source_key
    group by all

),

won_claims as (

    select *
    from id_claims
    qualify row_number() over (
        partition by fabric_customer_id
        order by holders desc, starts_with(cluster_anchor, 'crm:') desc, cluster_anchor
    ) = 1

),

kept_ids as (

    select
        claim.cluster_anchor,
        claim.fabric_customer_id
    from won_claims as claim
    inner join id_ages as age
        on claim.fabric_customer_id = age.fabric_customer_id
    qualify row_number() over (
        partition by claim.cluster_anchor
        order by age.id_first_seen, claim.fabric_customer_id
    ) = 1

),

clusters_without_id as (

    select distinct member.cluster_anchor
    from members as member
    anti join kept_ids as kept
        on member.cluster_anchor = kept.cluster_anchor

),

-- An id once used stays reserved: a fresh id that was used before (a cluster that split off
-- again) is derived once more from the anchor with a suffix.
used_ids as (

    select fabric_customer_id from previous_xref
    union
    select previous_fabric_customer_id from previous_xref
    where previous_fabric_customer_id is not null

),

new_ids as (

    select
        cluster.cluster_anchor,
        case
            when used.fabric_customer_id is null
                then 'FC-' || left(md5(cluster.cluster_anchor), 12)
            else 'FC-' || left(md5(cluster.cluster_anchor || '#reissued'), 12)
        end as fabric_customer_id
    from clusters_without_id as cluster
    left join used_ids as used
        on used.fabric_customer_id = 'FC-' || left(md5(cluster.cluster_anchor), 12)

),

cluster_ids as (

    select * from kept_ids
    union all
    select * from new_ids

),

xref as (

    select
        member.system,
        member.source_key,
        cluster.fabric_customer_id,
        member.match_rule,
        member.match_score,
        member.crm_customer_id,
        member.first_seen_partition,
        member.last_seen_partition,
        case
            when previous.fabric_customer_id <> cluster.fabric_customer_id
                then previous.fabric_customer_id
            else previous.previous_fabric_customer_id
        end as previous_fabric_customer_id
    from members as member
    inner join cluster_ids as cluster
        on member.cluster_anchor = cluster.cluster_anchor
    left join previous_xref as previous
        on member.system = previous.system
        and member.source_key = previous.source_key

)

select * from xref
