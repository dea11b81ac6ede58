-- Every record linked to a CRM customer carries that customer's Fabric id.
with

xref as (

    select * from {{ ref('customer_xref') }}

),

crm_ids as (

    select cast(source_key as bigint) as crm_customer_id, fabric_customer_id
    from xref
    where system = 'crm'

)

select xref.system, xref.source_key, xref.fabric_customer_id, crm_ids.fabric_customer_id
from xref
inner join crm_ids
    on xref.crm_customer_id = crm_ids.crm_customer_id
where xref.fabric_customer_id <> crm_ids.fabric_customer_id
