{#
    Churn labels for every (as-of date, customer) row of customer_features: whether the
    customer's CRM cancellation falls in (D, D + churn_horizon_days], and whether that is known
    yet (D + horizon is on or before the latest ingested cancellation partition). Rebuilt in
    full each run so that labels of earlier dates become known as cancellations arrive.
#}
{% set horizon = churn_horizon_days() %}

with

features as (

    select as_of_date, fabric_customer_id, crm_customer_id
    from {{ ref('customer_features') }}

),

cancellations as (

    select * from {{ ref('stg_crm__cancellations') }}

),

first_cancellations as (

    select crm_customer_id, min(cancelled_on) as cancelled_on
    from cancellations
    group by crm_customer_id

),

cancellations_known_until as (

    select max(partition_date) as last_partition from cancellations

),

labels as (

    select
        feature.as_of_date,
        feature.fabric_customer_id,
        feature.crm_customer_id,
        coalesce(
            cancellation.cancelled_on > feature.as_of_date
            and cancellation.cancelled_on <= feature.as_of_date + {{ horizon }},
            false
        ) as churned_within_horizon,
        coalesce(
            feature.as_of_date + {{ horizon }} <= known.last_partition, false
        ) as label_known
    from features as feature
    left join first_cancellations as cancellation
        on feature.crm_customer_id = cancellation.crm_customer_id
    cross join cancellations_known_until as known

)

select * from labels
