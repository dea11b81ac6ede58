{#
    The run's inclusive partition window, from vars `start_date` and `end_date` ('YYYY-MM-DD'),
    as SQL DATE literals. Only the features layer uses it; a missing or malformed var fails the
    model that needs it (at run time, so `dbt parse` and the integrated layer work without vars).
#}
{% macro partition_var(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none or value == '' -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ name ~ "' is not set: run dbt with --vars "
                ~ "'{\"start_date\": \"YYYY-MM-DD\", \"end_date\": \"YYYY-MM-DD\"}' "
                ~ "(fabric.integrate.dbt.dbt_build_args builds it from the partition window)") }}
        {%- endif -%}
        {{- return("cast(null as date)") -}}
    {%- endif -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error(
            "var '" ~ name ~ "' must be a partition key YYYY-MM-DD, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return("date '" ~ value ~ "'") -}}
{%- endmacro %}

{% macro window_start() -%}
    {{- return(partition_var('start_date')) -}}
{%- endmacro %}

{% macro window_end() -%}
    {{- return(partition_var('end_date')) -}}
{%- endmacro %}

{# Days after an as-of date within which a cancellation counts as churn (var, default 30). #}
{% macro churn_horizon_days() -%}
    {%- set value = var('churn_horizon_days', 30) -%}
    {%- if not (value | string).isdigit() or (value | int) < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var 'churn_horizon_days' must be a positive integer, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return(value | int) -}}
{%- endmacro %}
