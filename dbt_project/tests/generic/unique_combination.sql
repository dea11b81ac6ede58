{#
    The combination of `columns` is unique over the model (rows with a NULL in any of them
    count too: a key column should also be tested not_null).
#}
{% test unique_combination(model, columns) %}

with

keys as (

    select {{ columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}

)

select * from keys where occurrences > 1

{% endtest %}
