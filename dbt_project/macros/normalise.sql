{#
    Normalisation of identity attributes, shared by every system's records so that values from
    different silos compare equal. Each macro takes a SQL expression and returns one; empty
    results are NULL so that a missing value never matches another missing value.
#}

{# Email: trimmed and lower-cased; anything without a single '@' between text is not an email. #}
{% macro normalise_email(expression) -%}
    case
        when regexp_full_match(lower(trim({{ expression }})), '[^@\s]+@[^@\s]+\.[^@\s]+')
            then lower(trim({{ expression }}))
    end
{%- endmacro %}

{#
    Phone: digits in national form. International prefixes of the service countries (+49, +43,
    +41, or 0049...) become the trunk '0'; '(0)' written after a country code is dropped.
    Fewer than 6 digits is not a phone number.
#}
{% macro normalise_phone(expression) -%}
    case
        when length(regexp_replace({{ expression }}, '[^0-9]', '', 'g')) >= 6
            then regexp_replace(
                regexp_replace(
                    regexp_replace(replace({{ expression }}, '(0)', ''), '[^0-9+]', '', 'g'),
                    '^(\+|00)(49|43|41)0?', '0'),
                '[^0-9]', '', 'g')
    end
{%- endmacro %}

{#
    Name key for matching: case and accents folded the way German ASCII systems transliterate
    (ä = ae, ö = oe, ü = ue, ß = ss, other accents dropped), hyphens and spaces removed, so
    'Müller-Lüdenscheidt', 'MUELLER-LUEDENSCHEIDT' and 'mueller lüdenscheidt' give the same key.
#}
{% macro name_key(expression) -%}
    nullif(
        regexp_replace(
            strip_accents(
                replace(replace(replace(replace(lower(trim({{ expression }})),
                    'ä', 'ae'), 'ö', 'oe'), 'ü', 'ue'), 'ß', 'ss')),
            '[^a-z]', '', 'g'),
        '')
{%- endmacro %}

{#
    Splitting a full name. 'LAST, FIRST' (the ERP's style) splits at the comma; otherwise the
    last whitespace-separated token is the last name (names are single tokens, double names are
    hyphenated) and the rest is the first name. A single token ('anna', as some web profiles
    show) is taken as a first name.
#}
{% macro first_name_of(full_name) -%}
    nullif(trim(
        case
            when contains({{ full_name }}, ',') then split_part({{ full_name }}, ',', 2)
            when regexp_matches(trim({{ full_name }}), '\s')
                then regexp_extract(trim({{ full_name }}), '^(.*\S)\s+\S+$', 1)
            else {{ full_name }}
        end), '')
{%- endmacro %}

{% macro last_name_of(full_name) -%}
    nullif(trim(
        case
            when contains({{ full_name }}, ',') then split_part({{ full_name }}, ',', 1)
            when regexp_matches(trim({{ full_name }}), '\s')
                then regexp_extract(trim({{ full_name }}), '(\S+)$', 1)
        end), '')
{%- endmacro %}

{# House number: the first number in the street line with an attached letter ('12a', '3 B'). #}
{% macro house_number(street) -%}
    nullif(lower(regexp_replace(
        regexp_extract({{ street }}, '(\d+\s?[A-Za-z]?)(\s|$|,)', 1), '\s', '', 'g')), '')
{%- endmacro %}

{#
    Street key: the street name without the number, 'Straße'/'Strasse'/'Str.' folded to 'str',
    then the name key (so 'HAUPTSTR. 12' and 'Hauptstraße 12' give 'hauptstr').
#}
{% macro street_key(street) -%}
    {{ name_key(
        "regexp_replace(regexp_replace(lower(" ~ street ~ "), '\\d+\\s?[a-z]?(\\s|$|,)', ' ', 'g'), "
        ~ "'(straße|strasse|str\\.?)(\\s|$)', 'str ', 'g')") }}
{%- endmacro %}

{# Postal code: digits only, leading zeros dropped ('01067' and '1067' compare equal). #}
{% macro postal_key(expression) -%}
    nullif(ltrim(regexp_replace({{ expression }}, '[^0-9]', '', 'g'), '0'), '')
{%- endmacro %}

{# Free-text country to the key of the `country_aliases` seed (case, spaces, accents folded). #}
{% macro country_alias_key(expression) -%}
    nullif(lower(strip_accents(regexp_replace(trim({{ expression }}), '\s+', ' ', 'g'))), '')
{%- endmacro %}
