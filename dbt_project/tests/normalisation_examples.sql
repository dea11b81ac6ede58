-- The normalisation macros on the spellings the source systems use. Returns the examples
-- whose normalised value differs from the expected one.
with

examples as (

    select * from (values
        ('phone', '+49 30 1234567', '0301234567'),
        ('phone', '030 1234567', '0301234567'),
        ('phone', '030/1234567', '0301234567'),
        ('phone', '030-1234567', '0301234567'),
        ('phone', '+49 (0)30 1234567', '0301234567'),
        ('phone', '0049301234567', '0301234567'),
        ('phone', '+49301234567', '0301234567'),
        ('phone', '(030) 123 4567', '0301234567'),
        ('phone', '+43 1 2345678', '012345678'),
        ('phone', '0041 44 7654321', '0447654321'),
        ('phone', '12-34', null),
        ('email', ' Anna.Mueller@GMX.DE  ', 'anna.mueller@gmx.de'),
        ('email', 'not an email', null),
        ('email', '', null),
        ('name_key', 'Müller-Lüdenscheidt', 'muellerluedenscheidt'),
        ('name_key', 'MUELLER-LUEDENSCHEIDT', 'muellerluedenscheidt'),
        ('name_key', 'Rüegg', 'rueegg'),
        ('name_key', 'RUEEGG', 'rueegg'),
        ('name_key', 'Chloé', 'chloe'),
        ('name_key', 'Weiß', 'weiss'),
        ('name_key', 'Çelik', 'celik'),
        ('first_name', 'MUELLER, HANS', 'HANS'),
        ('last_name', 'MUELLER, HANS', 'MUELLER'),
        ('first_name', 'Anna-Lena Keller-Sutter', 'Anna-Lena'),
        ('last_name', 'Anna-Lena Keller-Sutter', 'Keller-Sutter'),
        ('first_name', 'anna', 'anna'),
        ('last_name', 'anna', null),
        ('house_number', 'Hauptstraße 12a', '12a'),
        ('house_number', 'HAUPTSTR. 12A', '12a'),
        ('house_number', 'Am Markt 3', '3'),
        ('street_key', 'Hauptstraße 12a', 'hauptstr'),
        ('street_key', 'HAUPTSTR. 12A', 'hauptstr'),
        ('street_key', 'Bahnhofstrasse 7', 'bahnhofstr'),
        ('postal_key', '01067', '1067'),
        ('country_alias_key', ' Österreich ', 'osterreich')
    ) as example(macro, input, expected)

),

normalised as (

    select
        *,
        case macro
            when 'phone' then {{ normalise_phone('input') }}
            when 'email' then {{ normalise_email('input') }}
            when 'name_key' then {{ name_key('input') }}
            when 'first_name' then {{ first_name_of('input') }}
            when 'last_name' then {{ last_name_of('input') }}
            when 'house_number' then {{ house_number('input') }}
            when 'street_key' then {{ street_key('input') }}
            when 'postal_key' then {{ postal_key('input') }}
            when 'country_alias_key' then {{ country_alias_key('input') }}
        end as actual
    from examples

)

select * from normalised
where actual is distinct from expected
