-- A Fabric customer holds at most one CRM customer: the CRM is the system of record, and two
-- CRM customers in one cluster would mean the matcher merged two people.
select
    fabric_customer_id,
    count(*) as crm_records
from {{ ref('customer_xref') }}
where system = 'crm'
group by fabric_customer_id
having count(*) > 1
