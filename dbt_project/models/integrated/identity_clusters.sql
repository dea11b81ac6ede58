-- Every record with the cluster it belongs to in this run. A CRM customer anchors a cluster of
-- itself and the records linked to it; the remaining records (prospects) cluster among
-- themselves by normalised email, anchored at their smallest 'system:key'.
with

records as (

    select * from {{ ref('identity_records') }}

),

matches as (

    select * from {{ ref('identity_matches') }}

),

crm_members as (

    select
        system,
        source_key,
        'crm:' || source_key as cluster_anchor,
        cast(source_key as bigint) as crm_customer_id,
        'crm' as match_rule,
        cast(null as integer) as match_score
    from records
    where system = 'crm'

),

linked_members as (

    select
        record.system,
        record.source_key,
        'crm:' || match.crm_customer_id as cluster_anchor,
        match.crm_customer_id,
        match.match_rule,
        match.match_score
    from records as record
    inner join matches as match
        on record.system = match.system
        and record.source_key = match.source_key

),

unlinked_records as (

    select record.*
    from records as record
    anti join matches as match
        on record.system = match.system
        and record.source_key = match.source_key
    where record.system <> 'crm'

),

prospect_members as (

    select
        system,
        source_key,
        min(system || ':' || source_key) over prospect_cluster as cluster_anchor,
        cast(null as bigint) as crm_customer_id,
        case
            when count(*) over prospect_cluster > 1 then 'prospect_email' else 'prospect'
        end as match_rule,
        cast(null as integer) as match_score
    from unlinked_records
    window prospect_cluster as (
        partition by coalesce('email:' || email, system || ':' || source_key)
    )

),

members as (

    select * from crm_members
    union all
    select * from linked_members
    union all
    select * from prospect_members

),

with_partitions as (

    select
        member.*,
        record.first_seen_partition,
        record.last_seen_partition
    from members as member
    inner join records as record
        on member.system = record.system
        and member.source_key = record.source_key

)

select * from with_partitions
