{#
    Layers are schemas: `+schema: staging` builds in schema `staging` exactly (dbt's default
    would prefix the target schema, giving `main_staging`). Nodes without a custom schema use
    the target's schema.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
