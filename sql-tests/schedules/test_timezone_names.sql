-- Only IANA Area/Location names (and UTC) are accepted as scheduling_timezone (issue 7): zone
-- files that are abbreviations or POSIX rules would silently change meaning.
begin;
select plan(8);

create temp table ids on commit drop as
select fixture.active_preset('web', 1) as preset;

create function pg_temp.set_zone(p_zone text) returns void language sql as $$
    update prebuilds.presets set scheduling_timezone = p_zone
    where id = (select preset from ids);
$$;

select lives_ok($$select pg_temp.set_zone('Europe/Paris')$$, 'Europe/Paris is accepted');
select lives_ok(
    $$select pg_temp.set_zone('America/Argentina/Buenos_Aires')$$,
    'a three-part name is accepted'
);
select lives_ok($$select pg_temp.set_zone('UTC')$$, 'UTC is accepted');
select lives_ok($$select pg_temp.set_zone('Etc/GMT+5')$$, 'Etc/GMT+5 is accepted');
select throws_like(
    $$select pg_temp.set_zone('CET')$$,
    '%''CET'' is not an IANA Area/Location time zone name%', 'CET is refused'
);
select throws_like(
    $$select pg_temp.set_zone('EST5EDT')$$,
    '%''EST5EDT'' is not an IANA Area/Location%', 'EST5EDT is refused'
);
select throws_like(
    $$select pg_temp.set_zone('posixrules')$$,
    '%''posixrules''%', 'posixrules is refused (unknown, or not an IANA name)'
);
select is(
    (select scheduling_timezone from prebuilds.presets where id = (select preset from ids)),
    'Etc/GMT+5', 'a refused name changes nothing'
);

select * from finish();
rollback;
