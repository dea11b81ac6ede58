{#
    Churn features per active CRM customer and as-of date D in the run's window.

    Point in time: a row for D uses only rows of partitions on or before D (activity is dated by
    its partition; an invoice counts as late from the day after its due date unless a payment
    dated on or before the due date exists). Identity (which ERP account, requester and web
    user belong to the customer) is the current state of customer_xref.

    Method: activity is aggregated to one row per customer and day, unioned with the grid of
    (customer, D) rows to compute, and turned into trailing sums with RANGE frames over the day
    number and running totals; the grid rows are then kept. Rebuilding D replaces all its rows
    (delete+insert on as_of_date).
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}

with

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

crm_customer_versions as (

    select * from {{ ref('stg_crm__customer_versions') }}

),

cancellations as (

    select * from {{ ref('stg_crm__cancellations') }}

),

xref as (

    select * from {{ ref('customer_xref') }}

),

invoices as (

    select * from {{ ref('stg_erp__invoices') }}
    where partition_date <= {{ window_end() }}

),

payments as (

    select * from {{ ref('stg_erp__payments') }}
    where partition_date <= {{ window_end() }}

),

tickets as (

    select * from {{ ref('stg_support__tickets') }}
    where partition_date <= {{ window_end() }}

),

web_events as (

    select * from {{ ref('stg_web__events') }}
    where partition_date <= {{ window_end() }}

),

as_of_dates as (

    select cast(generated.day as date) as as_of_date
    from range(
        cast({{ window_start() }} as timestamp),
        cast({{ window_end() }} as timestamp) + interval 1 day,
        interval 1 day
    ) as generated(day)

),

first_cancellations as (

    select
        crm_customer_id,
        min(cancelled_on) as cancelled_on
    from cancellations
    group by crm_customer_id

),

customer_lifetimes as (

    select
        xref.fabric_customer_id,
        customer.crm_customer_id,
        customer.signup_date,
        cancellation.cancelled_on
    from crm_customers as customer
    inner join xref
        on xref.system = 'crm'
        and xref.source_key = cast(customer.crm_customer_id as varchar)
    left join first_cancellations as cancellation
        on customer.crm_customer_id = cancellation.crm_customer_id

),

-- Active on D: signed up on or before D and not cancelled on or before D.
active_customer_days as (

    select
        as_of.as_of_date,
        customer.fabric_customer_id,
        customer.crm_customer_id,
        customer.signup_date
    from as_of_dates as as_of
    inner join customer_lifetimes as customer
        on customer.signup_date <= as_of.as_of_date
        and (customer.cancelled_on is null or customer.cancelled_on > as_of.as_of_date)

),

earliest_fees as (

    select crm_customer_id, arg_min(monthly_fee, partition_date) as monthly_fee
    from crm_customer_versions
    group by crm_customer_id

),

-- The fee of the latest CRM version ingested on or before D; when the CRM was first ingested
-- after D (a current-state extract), its earliest ingested version stands in.
monthly_fees as (

    select
        active.as_of_date,
        active.crm_customer_id,
        coalesce(as_of_version.monthly_fee, earliest.monthly_fee) as monthly_fee
    from active_customer_days as active
    asof left join crm_customer_versions as as_of_version
        on active.crm_customer_id = as_of_version.crm_customer_id
        and active.as_of_date >= as_of_version.partition_date
    left join earliest_fees as earliest
        on active.crm_customer_id = earliest.crm_customer_id

),

linked_records as (

    select system, source_key, crm_customer_id
    from xref
    where system <> 'crm' and crm_customer_id is not null

),

customer_invoices as (

    select invoice.*, account.crm_customer_id
    from invoices as invoice
    inner join linked_records as account
        on account.system = 'erp' and invoice.account_no = account.source_key

),

customer_payments as (

    select payment.*, account.crm_customer_id
    from payments as payment
    inner join linked_records as account
        on account.system = 'erp' and payment.account_no = account.source_key

),

first_payments as (

    select invoice_no, min(paid_on) as first_paid_on
    from payments
    group by invoice_no

),

late_invoices as (

    select
        invoice.crm_customer_id,
        invoice.due_date + 1 as late_from
    from customer_invoices as invoice
    left join first_payments as payment
        on invoice.invoice_no = payment.invoice_no
    where invoice.due_date is not null
        and (payment.first_paid_on is null or payment.first_paid_on > invoice.due_date)

),

customer_tickets as (

    select ticket.*, requester.crm_customer_id
    from tickets as ticket
    inner join linked_records as requester
        on requester.system = 'support' and ticket.requester_id = requester.source_key

),

customer_web_events as (

    select event.*, web_user.crm_customer_id
    from web_events as event
    inner join linked_records as web_user
        on web_user.system = 'web' and event.user_id = web_user.source_key

),

activity as (

    select
        crm_customer_id,
        partition_date as activity_date,
        1 as invoices,
        amount as invoiced_amount
    from customer_invoices
    union all by name
    select
        crm_customer_id,
        late_from as activity_date,
        1 as late_payments
    from late_invoices
    where late_from <= {{ window_end() }}
    union all by name
    select
        crm_customer_id,
        partition_date as activity_date,
        amount as paid_amount,
        partition_date as payment_day
    from customer_payments
    union all by name
    select
        crm_customer_id,
        partition_date as activity_date,
        1 as tickets,
        (satisfaction <= 2)::int as low_satisfaction_tickets
    from customer_tickets
    union all by name
    select
        crm_customer_id,
        partition_date as activity_date,
        (event_type = 'login')::int as logins,
        (event_type = 'cancel_page_view')::int as cancel_page_views,
        case when event_type = 'login' then partition_date end as login_day
    from customer_web_events
    where event_type in ('login', 'cancel_page_view')

),

-- Activity older than every trailing window of the run only matters to the running totals:
-- it is folded into one opening row per customer, the day before the earliest window.
opening_activity as (

    select
        crm_customer_id,
        {{ window_start() }} - 90 as activity_date,
        sum(invoiced_amount) as invoiced_amount,
        sum(paid_amount) as paid_amount,
        max(payment_day) as payment_day,
        max(login_day) as login_day
    from activity
    where activity_date < {{ window_start() }} - 89
    group by crm_customer_id

),

-- One row per customer and day: the opening row, every day with activity in the trailing
-- windows, and every as-of date to compute.
customer_days as (

    select
        crm_customer_id,
        activity_date,
        activity_date - date '2000-01-01' as day_number,
        coalesce(sum(invoices), 0) as invoices,
        coalesce(sum(late_payments), 0) as late_payments,
        coalesce(sum(invoiced_amount), 0) - coalesce(sum(paid_amount), 0) as balance_change,
        max(payment_day) as payment_day,
        coalesce(sum(tickets), 0) as tickets,
        coalesce(sum(low_satisfaction_tickets), 0) as low_satisfaction_tickets,
        coalesce(sum(logins), 0) as logins,
        max(login_day) as login_day,
        coalesce(sum(cancel_page_views), 0) as cancel_page_views
    from (
        select * from opening_activity
        union all by name
        select * from activity where activity_date >= {{ window_start() }} - 89
        union all by name
        select crm_customer_id, as_of_date as activity_date from active_customer_days
    )
    group by crm_customer_id, activity_date

),

-- Frames over an integer day number: RANGE frames are calendar windows on sparse rows.
trailing_activity as (

    select
        crm_customer_id,
        activity_date,
        sum(invoices) over last_90_days as invoices_90d,
        sum(late_payments) over last_90_days as late_payments_90d,
        sum(tickets) over last_30_days as tickets_30d,
        sum(low_satisfaction_tickets) over last_90_days as low_satisfaction_tickets_90d,
        sum(logins) over last_7_days as logins_7d,
        sum(logins) over last_30_days as logins_30d,
        sum(cancel_page_views) over last_30_days as cancel_page_views_30d,
        sum(balance_change) over up_to_day as open_balance,
        max(payment_day) over up_to_day as last_payment_date,
        max(login_day) over up_to_day as last_login_date
    from customer_days
    window
        up_to_day as (
            partition by crm_customer_id order by day_number
            rows between unbounded preceding and current row
        ),
        last_7_days as (
            partition by crm_customer_id order by day_number
            range between 6 preceding and current row
        ),
        last_30_days as (
            partition by crm_customer_id order by day_number
            range between 29 preceding and current row
        ),
        last_90_days as (
            partition by crm_customer_id order by day_number
            range between 89 preceding and current row
        )

),

-- Where each history starts: without a payment (login) on record, "days since" counts from
-- the later of signup and the first partition of payments (web events) Fabric holds.
history_starts as (

    select
        (select min(partition_date) from payments) as payments_from,
        (select min(partition_date) from web_events) as web_events_from

),

features as (

    select
        active.as_of_date,
        active.fabric_customer_id,
        active.crm_customer_id,
        cast(active.as_of_date - active.signup_date as bigint) as tenure_days,
        cast(coalesce(fee.monthly_fee, 0) as double) as monthly_fee,
        cast(trailing_sums.invoices_90d as bigint) as invoices_90d,
        cast(trailing_sums.late_payments_90d as bigint) as late_payments_90d,
        cast(greatest(0, active.as_of_date - coalesce(
            trailing_sums.last_payment_date,
            greatest(active.signup_date, history.payments_from)
        )) as bigint) as days_since_last_payment,
        cast(trailing_sums.open_balance as double) as open_balance,
        cast(trailing_sums.tickets_30d as bigint) as tickets_30d,
        cast(trailing_sums.low_satisfaction_tickets_90d as bigint) as low_satisfaction_tickets_90d,
        cast(trailing_sums.logins_7d as bigint) as logins_7d,
        cast(trailing_sums.logins_30d as bigint) as logins_30d,
        cast(greatest(0, active.as_of_date - coalesce(
            trailing_sums.last_login_date,
            greatest(active.signup_date, history.web_events_from)
        )) as bigint) as days_since_last_login,
        cast(trailing_sums.cancel_page_views_30d as bigint) as cancel_page_views_30d
    from active_customer_days as active
    inner join trailing_activity as trailing_sums
        on active.crm_customer_id = trailing_sums.crm_customer_id
        and active.as_of_date = trailing_sums.activity_date
    inner join monthly_fees as fee
        on active.crm_customer_id = fee.crm_customer_id
        and active.as_of_date = fee.as_of_date
    cross join history_starts as history

)

select * from features
