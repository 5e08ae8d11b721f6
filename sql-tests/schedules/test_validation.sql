-- Bad schedules get a clear error at write time (SPEC 2, 4.3): invalid expressions, unknown time
-- zones and overlapping schedules are rejected with SQLSTATE 23514 and a message naming the
-- problem, on insert and on update.
begin;
select plan(44);

do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('t', 1), 'UTC');
begin
    perform fixture.schedule(v_p, '* 9-18 * * 1-5', 3);
end;
$$;

create temp table ids on commit drop as
select
    p.id as preset,
    p.template_version_id as version
from prebuilds.presets as p;

-- Expressions ------------------------------------------------------------------------------------

select is(
    prebuilds.cron_expression_error('* 9-18 * * 1-5'),
    null,
    'cron_expression_error is null for a valid expression'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 9-18 * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 9-18 * *'': cron expression needs 5 fields (minute hour day-of-month '
    || 'month day-of-week), got 4 in ''* 9-18 * *''',
    'four fields: rejected, saying how many were found'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * * 1-5 2025', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * * 1-5 2025'': cron expression needs 5 fields (minute hour '
    || 'day-of-month month day-of-week), got 6 in ''* 20 * * 1-5 2025''',
    'six fields (a year): rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '0 20 * * 1-5', 2 from ids$$,
    '23514',
    'invalid schedule ''0 20 * * 1-5'': minute field must be *, got ''0''',
    'a minute other than *: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '*/2 20 * * 1-5', 2 from ids$$,
    '23514',
    'invalid schedule ''*/2 20 * * 1-5'': minute field must be *, got ''*/2''',
    'a minute step: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 24 * * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 24 * * *'': hour field: ''24'' is outside 0-23',
    'hour 24: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 0 * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 0 * *'': day-of-month field: ''0'' is outside 1-31',
    'day of month 0: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 1-32 * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 1-32 * *'': day-of-month field: ''1-32'' is outside 1-31',
    'day of month up to 32: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * 13 *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * 13 *'': month field: ''13'' is outside 1-12',
    'month 13: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * 0 *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * 0 *'': month field: ''0'' is outside 1-12',
    'month 0: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * * 1,8', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * * 1,8'': day-of-week field: ''8'' is outside 0-7',
    'day of week 8 in a list: out of range'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 22-20 * * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 22-20 * * *'': hour field: ''22-20'' is a range that runs backwards',
    'a backwards range (22-20, which cron would not wrap past midnight): rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* */2 * * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* */2 * * *'': hour field: ''*/2'' is not *, a number, a range a-b or a '
    || 'list of those',
    'an hour step: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20-23/2 * * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20-23/2 * * *'': hour field: ''20-23/2'' is not *, a number, a range '
    || 'a-b or a list of those',
    'a range with a step: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * * MON', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * * MON'': day-of-week field: ''MON'' is not *, a number, a range '
    || 'a-b or a list of those',
    'a day name: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20 * JAN *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20 * JAN *'': month field: ''JAN'' is not *, a number, a range a-b or '
    || 'a list of those',
    'a month name: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 20,21, * * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 20,21, * * *'': hour field: '''' is not *, a number, a range a-b or a '
    || 'list of those',
    'an empty list item: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '   ', 2 from ids$$,
    '23514',
    'invalid schedule ''   '': cron expression is empty',
    'a blank expression: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '@daily', 2 from ids$$,
    '23514',
    'invalid schedule ''@daily'': cron expression needs 5 fields (minute hour day-of-month month '
    || 'day-of-week), got 1 in ''@daily''',
    'a macro such as @daily: rejected'
);

select throws_ok(
    $$update prebuilds.preset_schedules set cron_expression = '* 9-18 * * 1-5 *'$$,
    '23514',
    'invalid schedule ''* 9-18 * * 1-5 *'': cron expression needs 5 fields (minute hour '
    || 'day-of-month month day-of-week), got 6 in ''* 9-18 * * 1-5 *''',
    'an update to an invalid expression: rejected too'
);

select is(
    (select cron_expression from prebuilds.preset_schedules),
    '* 9-18 * * 1-5',
    'the rejected writes left the valid schedule as it was'
);

-- Valid expressions, each on a fresh preset so that they cannot overlap.
select lives_ok(
    $$
    insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
    values
    (fixture.timezone(fixture.preset(fixture.new_version('t', 'v2'), 'a'), 'UTC'),
     '* * * * *', 1),
    (fixture.timezone(fixture.preset(fixture.new_version('t', 'v3'), 'b'), 'UTC'),
     '* 0-23 1-31 1-12 0-7', 1),
    (fixture.timezone(fixture.preset(fixture.new_version('t', 'v4'), 'c'), 'UTC'),
     '* 9,12-13,22 1,15 * 5-7', 1),
    (fixture.timezone(fixture.preset(fixture.new_version('t', 'v5'), 'd'), 'UTC'),
     '  *   9-18  *  *  1-5  ', 1),
    (fixture.timezone(fixture.preset(fixture.new_version('t', 'v6'), 'e'), 'UTC'),
     e'*\t9-18\t*\t*\t1-5\n', 1)
    $$,
    'valid expressions (lists, ranges, 7 for Sunday, spaces, tabs, a trailing newline) are '
    || 'accepted'
);

-- Overlapping schedules (Coder's definition) ------------------------------------------------------

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 12 * * 3', 2 from ids$$,
    '23514',
    'invalid schedule ''* 12 * * 3'': it overlaps schedule ''* 9-18 * * 1-5'' of the same preset',
    'a schedule overlapping another of the same preset: rejected'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 18-20 15 * *', 2 from ids$$,
    '23514',
    'invalid schedule ''* 18-20 15 * *'': it overlaps schedule ''* 9-18 * * 1-5'' of the same '
    || 'preset',
    'overlapping in hour 18 on the 15th (some 15th is a weekday): rejected'
);

select lives_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 9-18 * * 0,6', 1 from ids$$,
    'the same hours on weekend days do not overlap weekdays: accepted'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 10 * * 7', 2 from ids$$,
    '23514',
    'invalid schedule ''* 10 * * 7'': it overlaps schedule ''* 9-18 * * 0,6'' of the same preset',
    'day of week 7 overlaps 0: both are Sunday'
);

select lives_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 19-23 * * *', 1 from ids$$,
    'evening hours every day do not overlap 9-18: accepted'
);

select lives_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 0-8 * 1 *', 1 from ids$$,
    'early hours in January only: accepted'
);

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 8 1 1,2 *', 1 from ids$$,
    '23514',
    'invalid schedule ''* 8 1 1,2 *'': it overlaps schedule ''* 0-8 * 1 *'' of the same preset',
    'hour 8 of 1 January and 1 February overlaps the January early hours'
);

select lives_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 8 1 2 *', 1 from ids$$,
    'hour 8 of 1 February only: accepted'
);

select throws_ok(
    $$update prebuilds.preset_schedules set cron_expression = '* 9-19 * * 1-5'
      where cron_expression = '* 9-18 * * 1-5'$$,
    '23514',
    'invalid schedule ''* 9-19 * * 1-5'': it overlaps schedule ''* 19-23 * * *'' of the same '
    || 'preset',
    'an update that makes a schedule overlap another: rejected'
);

select lives_ok(
    $$update prebuilds.preset_schedules set cron_expression = '* 9-17 * * 1-5',
          desired_instances = 4
      where cron_expression = '* 9-18 * * 1-5'$$,
    'an update of a schedule does not count as overlapping itself'
);

select lives_ok(
    $$
    insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
    values (fixture.timezone(fixture.preset(fixture.new_version('t', 'v7'), 'other'), 'UTC'),
            '* 9-18 * * 1-5', 3)
    $$,
    'schedules of different presets never overlap'
);

-- Time zones ------------------------------------------------------------------------------------

select throws_ok(
    $$insert into prebuilds.presets (template_version_id, name, scheduling_timezone)
      select version, 'mars', 'Mars/Olympus' from ids$$,
    '23514',
    'invalid preset ''mars'': unknown time zone ''Mars/Olympus''',
    'a preset with an unknown time zone: rejected on insert'
);

select throws_ok(
    $$update prebuilds.presets set scheduling_timezone = 'Mars/Olympus'
      where id = (select preset from ids)$$,
    '23514',
    'invalid preset ''default'': unknown time zone ''Mars/Olympus''',
    'and on update'
);

select throws_ok(
    $$update prebuilds.presets set scheduling_timezone = 'america/los_angeles'
      where id = (select preset from ids)$$,
    '23514',
    'invalid preset ''default'': ''america/los_angeles'' is not an IANA time zone name (did you '
    || 'mean ''America/Los_Angeles''?)',
    'a time zone name in the wrong case: rejected, with the right spelling'
);

select throws_ok(
    $$update prebuilds.presets set scheduling_timezone = 'PST'
      where id = (select preset from ids)$$,
    '23514',
    'invalid preset ''default'': ''PST'' is not an IANA time zone name',
    'a time zone abbreviation (a fixed offset, without daylight saving time): rejected'
);

select throws_ok(
    $$update prebuilds.presets set scheduling_timezone = 'UTC+3'
      where id = (select preset from ids)$$,
    '23514',
    'invalid preset ''default'': ''UTC+3'' is not an IANA time zone name',
    'a POSIX offset (PostgreSQL reads UTC+3 as 3 hours west of Greenwich): rejected'
);

select throws_ok(
    $$update prebuilds.presets set scheduling_timezone = '+05'
      where id = (select preset from ids)$$,
    '23514',
    'invalid preset ''default'': ''+05'' is not an IANA time zone name',
    'a bare offset: rejected'
);

select lives_ok(
    $$update prebuilds.presets set scheduling_timezone = 'Etc/GMT+3'
      where id = (select preset from ids)$$,
    'an IANA name with digits (Etc/GMT+3): accepted'
);

set local timezone = 'Asia/Tokyo';

select lives_ok(
    $$update prebuilds.presets set scheduling_timezone = 'Europe/Berlin'
      where id = (select preset from ids)$$,
    'a known IANA time zone: accepted'
);

select is(
    current_setting('TimeZone'),
    'Asia/Tokyo',
    'checking a time zone leaves the session''s TimeZone setting alone'
);

select lives_ok(
    $$update prebuilds.presets set scheduling_timezone = ''
      where id = (select preset from ids)$$,
    'no time zone ('''') is accepted (its schedules are then ignored)'
);

-- A time zone that got in without the check (or that the server no longer knows).
alter table prebuilds.presets disable trigger presets_check_timezone;
update prebuilds.presets set scheduling_timezone = 'Mars/Olympus'
where id = (select preset from ids);
alter table prebuilds.presets enable trigger presets_check_timezone;

select throws_ok(
    $$insert into prebuilds.preset_schedules (preset_id, cron_expression, desired_instances)
      select preset, '* 0-7 * * 2', 1 from ids$$,
    '23514',
    'invalid schedule ''* 0-7 * * 2'': preset ' || (select preset from ids)
    || ' has unknown time zone ''Mars/Olympus''',
    'a schedule for a preset whose time zone is unknown: rejected'
);

select * from finish();
rollback;
