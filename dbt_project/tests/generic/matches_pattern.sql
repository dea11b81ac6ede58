{# Every non-NULL value of the column fully matches the regular expression `pattern`. #}
{% test matches_pattern(model, column_name, pattern) %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
    and not regexp_full_match(cast({{ column_name }} as varchar), '{{ pattern }}')

{% endtest %}
