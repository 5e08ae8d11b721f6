-- Overlap of two schedules (SPEC 4.3, "Coder's definition", as the Coder Terraform provider
-- validates preset schedules): hours, months and days must all share a value, where days are
-- compared on day of week when either day-of-month is `*`, on day of month when either day of
-- week is `*`, and on either one when all four are restricted. 7 is Sunday, like 0.
begin;
select plan(29);

create temp table cases (a text, b text, expected bool) on commit drop;

insert into cases (a, b, expected)
values
-- Hours.
('* 9-18 * * 1-5', '* 9-18 * * 1-5', true),
('* 9-12 * * 1-5', '* 13-18 * * 1-5', false),
('* 9-14 * * 1-5', '* 12-18 * * 1-5', true),
('* 9-18 * * 1-5', '* 12-14 * * 1-5', true),
('* * * * 1-5', '* 9-18 * * 1-5', true),
('* 9-11,13-15 * * 1-5', '* 12,16-18 * * 1-5', false),
('* 9-11,13-15 * * 1-5', '* 10-12,14-16 * * 1-5', true),
('* 9-18 * * 1-5', '* 10-11,13-14 * * 1-5', true),
-- Days of week, day of month `*`.
('* 9-18 * * 1,3,5', '* 9-18 * * 2,4,6', false),
('* 9-18 * * 1-3', '* 9-18 * * 4-5', false),
('* 9-18 * * 1-5', '* 9-13 * * 6,0', false),
('* 9-18 * * *', '* 9-18 * * 1-5', true),
('* 9-18 * * 0', '* 9-18 * * 7', true),
('* 9-18 * * 5-7', '* 9-18 * * 0', true),
('* 9-18 * * 5-7', '* 9-18 * * 1-4', false),
-- Days of month, day of week `*`.
('* 9-18 1-15 * *', '* 9-18 10-20 * *', true),
('* 9-18 1-15 * *', '* 9-18 16-31 * *', false),
-- One day-of-month `*`: only the days of week count.
('* 9-18 * * 1', '* 9-18 15 * *', true),
('* 9-18 * * 1', '* 9-18 15 * 2', false),
-- All four restricted: either day field sharing a value is enough.
('* 9-18 1 * 1-3', '* 9-18 2 * 4-5', false),
('* 9-18 1 * 1-4', '* 9-18 1 * 3-5', true),
('* 9-18 1 * 1,3,5', '* 9-18 1 * 2,4,6', true),
('* 9-18 1-15 * 1-3', '* 9-18 16-31 * 3-5', true),
-- Months.
('* 9-18 * 1-6 *', '* 9-18 * 7-12 *', false),
('* 9-18 * 1-6 *', '* 9-18 * 6,12 *', true),
('* 9-18 * 12 1-5', '* 9-18 * 1 1-5', false);

select
    ok(
        prebuilds.schedules_overlap(a, b) = expected
        and prebuilds.schedules_overlap(b, a) = expected,
        quote_literal(a) || case when expected then ' overlaps ' else ' does not overlap ' end
        || quote_literal(b)
    )
from cases
order by a, b;

select is(
    prebuilds.schedules_overlap(e'* 9-18 * * 1-5\n', e'\t* 12 * * 3'),
    true,
    'whitespace around the expressions does not change the answer'
);

-- Coder's definition is a check on the fields, not on the calendar: `* 9 1 * 1` (the 1st, or a
-- Monday) and `* 9 2 * *` (the 2nd) do not overlap by it, yet both match at 09:00 on Monday
-- 2 June 2025. SPEC 4.3: the first matching schedule gives desired, first by created_at (the
-- ids are chosen to sort the other way, so the test tells the two orders apart).
do $$
declare
    v_p uuid := fixture.timezone(fixture.active_preset('t', 1), 'UTC');
begin
    insert into prebuilds.preset_schedules (
        id, preset_id, cron_expression, desired_instances, created_at
    )
    values
    ('00000000-0000-0000-0000-000000000002', v_p, '* 9 1 * 1', 5, '2025-01-01 00:00Z'),
    ('00000000-0000-0000-0000-000000000001', v_p, '* 9 2 * *', 7, '2025-01-02 00:00Z');
end;
$$;

select is(
    prebuilds.schedules_overlap('* 9 1 * 1', '* 9 2 * *'),
    false,
    '* 9 1 * 1 and * 9 2 * * do not overlap by Coder''s definition (so both can be written)'
);

select results_eq(
    $$select desired, schedule_note from fixture.pool('2025-06-02 09:00Z')$$,
    $$values (5, 'schedule ''* 9 1 * 1'' in force')$$,
    'both match Monday 2 June 09:00: the one written first gives desired'
);

select * from finish();
rollback;
