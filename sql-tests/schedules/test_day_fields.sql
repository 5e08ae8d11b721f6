-- The day fields of a schedule (SPEC 4.3): day of week 0 and 7 are both Sunday, ranges and lists
-- work in every field, and when both day-of-month and day-of-week are restricted either one
-- matching is enough (the usual cron rule). Noon UTC on the days below; June 2025 starts on a
-- Sunday.
begin;
select plan(50);

-- Each row: expression, day, expected match at noon UTC of that day.
create temp table cases (expression text, day date, expected bool) on commit drop;

insert into cases (expression, day, expected)
values
-- 0 and 7: Sunday.
('* * * * 0', '2025-06-01', true),
('* * * * 0', '2025-06-02', false),
('* * * * 7', '2025-06-01', true),
('* * * * 7', '2025-06-07', false),
('* * * * 7', '2025-06-08', true),
-- Ranges reaching 7: Friday to Sunday.
('* * * * 5-7', '2025-06-05', false),
('* * * * 5-7', '2025-06-06', true),
('* * * * 5-7', '2025-06-07', true),
('* * * * 5-7', '2025-06-08', true),
('* * * * 5-7', '2025-06-09', false),
('* * * * 0-7', '2025-06-04', true),
('* * * * 6-7,0', '2025-06-01', true),
-- Lists: Monday, Wednesday, Friday.
('* * * * 1,3,5', '2025-06-02', true),
('* * * * 1,3,5', '2025-06-03', false),
('* * * * 1,3,5', '2025-06-04', true),
('* * * * 1,3,5', '2025-06-05', false),
('* * * * 1,3,5', '2025-06-06', true),
('* * * * 1,3,5', '2025-06-07', false),
-- Day of month alone.
('* * 1 * *', '2025-06-01', true),
('* * 1 * *', '2025-06-02', false),
('* * 1-5,10 * *', '2025-06-05', true),
('* * 1-5,10 * *', '2025-06-06', false),
('* * 1-5,10 * *', '2025-06-10', true),
('* * 31 * *', '2025-05-31', true),
('* * 31 * *', '2025-06-01', false),
-- Both day fields restricted: the 1st of a month or any Monday.
('* * 1 * 1', '2025-06-01', true),
('* * 1 * 1', '2025-06-02', true),
('* * 1 * 1', '2025-06-03', false),
('* * 1 * 1', '2025-06-09', true),
('* * 1 * 1', '2025-07-01', true),
('* * 1 * 1', '2025-07-02', false),
-- Both restricted, but one of them spans everything: still either-or, so every day matches
-- (the rule looks at whether a field is `*`, as cron does, not at what it admits).
('* * 1-31 * 1', '2025-06-03', true),
('* * 15 * 0-6', '2025-06-03', true),
-- Month field.
('* * * 6 *', '2025-06-15', true),
('* * * 6 *', '2025-07-01', false),
('* * * 6 *', '2025-05-31', false),
('* * * 12,1-2 *', '2025-12-01', true),
('* * * 12,1-2 *', '2026-01-01', true),
('* * * 12,1-2 *', '2025-06-02', false),
-- Month with day of week: the fields combine with AND.
('* * * 6 1', '2025-06-02', true),
('* * * 6 1', '2025-06-03', false),
('* * * 6 1', '2025-09-01', false),
-- Month with both day fields: (1st or Monday) in September.
('* * 1 9 1', '2025-09-01', true),
('* * 1 9 1', '2025-09-08', true),
('* * 1 9 1', '2025-06-02', false),
-- 29 February.
('* * 29 2 *', '2028-02-29', true),
('* * 29 2 *', '2028-03-01', false);

select is(
    (select count(*) from cases where prebuilds.cron_expression_error(expression) is not null),
    0::bigint,
    'every expression below is valid'
);

-- One assertion per case, e.g. "'* * * * 7' matches Sun 08 Jun 2025".
select
    ok(
        prebuilds.cron_matches(expression, 'UTC', day + time '12:00' at time zone 'UTC')
        = expected,
        quote_literal(expression)
        || case when expected then ' matches ' else ' does not match ' end
        || to_char(day, 'Dy DD Mon YYYY')
    )
from cases
order by expression, day;

-- Through the plan: a preset with 1 prebuild, 2 on the 1st of the month or on Mondays.
do $$
begin
    perform fixture.schedule(
        fixture.timezone(fixture.active_preset('t', 1), 'UTC'), '* * 1 * 1', 2
    );
end;
$$;

select results_eq(
    $$
    select pool.desired, pool.creates
    from
        unnest(array[
            '2025-06-01 12:00Z', '2025-06-02 12:00Z', '2025-06-03 12:00Z'
        ]::timestamptz []) with ordinality as t (at, n)
    cross join lateral fixture.pool(t.at) as pool
    order by t.n
    $$,
    $$values (2, 2), (2, 2), (1, 1)$$,
    '* * 1 * 1 through the plan: Sunday the 1st 2, Monday the 2nd 2, Tuesday the 3rd 1'
);

-- Sunday written as 7: a weekend schedule.
update prebuilds.preset_schedules set cron_expression = '* 9-18 * * 6-7';

select results_eq(
    $$
    select pool.desired
    from
        unnest(array[
            '2025-06-06 12:00Z', '2025-06-07 12:00Z', '2025-06-08 12:00Z', '2025-06-09 12:00Z'
        ]::timestamptz []) with ordinality as t (at, n)
    cross join lateral fixture.pool(t.at) as pool
    order by t.n
    $$,
    $$values (1), (2), (2), (1)$$,
    '* 9-18 * * 6-7 through the plan: Friday 1, Saturday 2, Sunday 2, Monday 1'
);

select * from finish();
rollback;
