{#
    Links each non-CRM record to at most one CRM customer by scored evidence.

    Candidates are the CRM customers sharing a normalised email or phone with the record, or
    its full name, postal code and house number. Each candidate is scored:
        email        shared normalised email (CRM email, older CRM email or contact email)
        phone_name   shared normalised phone and the same last name
        name_address same first and last name, postal code and house number
        full name    same first and last name (a tie-breaker, e.g. in a shared household)
    The best candidate wins if it reaches the minimum score and no other candidate scores as
    much; ties and weak evidence give no link (a false link is worse than a missing one).
    An email or phone held by more than a few CRM customers (a shared office line, a
    placeholder address) identifies nobody and is ignored.
#}
{% set weights = {'email': 4, 'phone_name': 2, 'name_address': 3, 'full_name': 1} %}
{% set min_score = 3 %}
{% set max_customers_per_value = 5 %}

with

records as (

    select * from {{ ref('identity_records') }}

),

evidence as (

    select * from {{ ref('identity_evidence') }}

),

identifying_crm_evidence as (

    select *
    from evidence
    where system = 'crm'
    qualify count(*) over (partition by kind, value) <= {{ max_customers_per_value }}

),

crm_records as (

    select * from records where system = 'crm'

),

other_records as (

    select * from records where system <> 'crm'

),

shared_contact_values as (

    select
        other.system,
        other.source_key,
        crm.source_key as crm_key,
        bool_or(other.kind = 'email') as shares_email,
        bool_or(other.kind = 'phone') as shares_phone
    from evidence as other
    inner join identifying_crm_evidence as crm
        on other.kind = crm.kind
        and other.value = crm.value
    where other.system <> 'crm'
    group by all

),

same_name_and_address as (

    select
        other.system,
        other.source_key,
        crm.source_key as crm_key
    from other_records as other
    inner join crm_records as crm
        on other.first_name_key = crm.first_name_key
        and other.last_name_key = crm.last_name_key
        and other.postal_key = crm.postal_key
        and other.house_number = crm.house_number

),

candidates as (

    select system, source_key, crm_key from shared_contact_values
    union
    select system, source_key, crm_key from same_name_and_address

),

candidate_evidence as (

    select
        candidate.system,
        candidate.source_key,
        candidate.crm_key,
        coalesce(shared.shares_email, false) as shares_email,
        coalesce(shared.shares_phone, false)
            and coalesce(other.last_name_key = crm.last_name_key, false) as shares_phone_and_name,
        address.crm_key is not null as shares_name_and_address,
        coalesce(
            other.first_name_key = crm.first_name_key
            and other.last_name_key = crm.last_name_key, false
        ) as shares_full_name
    from candidates as candidate
    inner join other_records as other
        on candidate.system = other.system
        and candidate.source_key = other.source_key
    inner join crm_records as crm
        on candidate.crm_key = crm.source_key
    left join shared_contact_values as shared
        on candidate.system = shared.system
        and candidate.source_key = shared.source_key
        and candidate.crm_key = shared.crm_key
    left join same_name_and_address as address
        on candidate.system = address.system
        and candidate.source_key = address.source_key
        and candidate.crm_key = address.crm_key

),

scored as (

    select
        *,
        {{ weights['email'] }} * shares_email::int
        + {{ weights['phone_name'] }} * shares_phone_and_name::int
        + {{ weights['name_address'] }} * shares_name_and_address::int
        + {{ weights['full_name'] }} * shares_full_name::int as score
    from candidate_evidence

),

ranked as (

    select
        *,
        rank() over (partition by system, source_key order by score desc) as score_rank,
        count(*) over (partition by system, source_key) as candidate_count
    from scored

),

best_candidates as (

    select
        *,
        count(*) over (partition by system, source_key) as best_count
    from ranked
    where score_rank = 1

),

links as (

    select
        system,
        source_key,
        cast(crm_key as bigint) as crm_customer_id,
        case
            when shares_email then 'email'
            when shares_name_and_address then 'name_address'
            else 'phone_name'
        end as match_rule,
        score as match_score,
        candidate_count
    from best_candidates
    where best_count = 1 and score >= {{ min_score }}

)

select * from links
