-- create_prebuild's re-check (SPEC 4.5) uses the schedule in force (SPEC 4.3), as the plan does.
-- It reads now(), which is fixed inside this transaction, so the schedules are written relative
-- to the current UTC hour: "this hour" and "every hour but this one". Deterministic at any time.
begin;
select plan(10);

do $$
declare
    v_hour int := extract(hour from now() at time zone 'UTC')::int;
    v_this_hour text := format('* %s * * *', v_hour);
    v_other_hours text := format(
        '* %s * * *',
        concat_ws(
            ',',
            case when v_hour > 0 then '0-' || v_hour - 1 end,
            case when v_hour < 23 then v_hour + 1 || '-23' end
        )
    );
    v_in uuid := fixture.timezone(fixture.active_preset('in-hours', 1), 'UTC');
    v_out uuid := fixture.timezone(fixture.active_preset('out-of-hours', 1), 'UTC');
    v_closed uuid := fixture.timezone(fixture.active_preset('closed', 2), 'UTC');
    v_no_zone uuid := fixture.active_preset('no-zone', 1);
begin
    perform fixture.schedule(v_in, v_this_hour, 3);
    perform fixture.schedule(v_out, v_other_hours, 3);
    perform fixture.schedule(v_closed, v_this_hour, 0);
    perform fixture.schedule(v_no_zone, v_this_hour, 3);
    perform fixture.prebuild(v_in, now() - interval '1 hour');
    perform fixture.prebuild(v_out, now() - interval '1 hour');
    perform fixture.prebuild(v_no_zone, now() - interval '1 hour');
end;
$$;

create temp table before on commit drop as
select count(*) as n from prebuilds.workspaces;

select results_eq(
    $$
    select template_name, desired, schedule_note like 'schedule %in force'
    from prebuilds.preset_state
    $$,
    $$
    values
        ('closed', 0, true),
        ('in-hours', 3, true),
        ('no-zone', 1, false),
        ('out-of-hours', 1, false)
    $$,
    'the plan at now(): in-hours 3 and closed 0 by their schedules, the others 1'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('out-of-hours')),
    null,
    'outside its schedule, with desired_instances 1 and 1 running: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('closed')),
    null,
    'a schedule of 0 in force overrides desired_instances 2: null'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('no-zone')),
    null,
    'a schedule on a preset without a time zone is ignored: 1 running is enough, null'
);

select is(
    (select count(*) from prebuilds.workspaces),
    (select n from before),
    'none of these inserted anything'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('in-hours')),
    null,
    'inside its schedule of 3, with 1 running: a prebuild is created'
);

select isnt(
    prebuilds.create_prebuild(fixture.preset_of('in-hours')),
    null,
    'and a second one (1 running, 1 starting)'
);

select is(
    prebuilds.create_prebuild(fixture.preset_of('in-hours')),
    null,
    'a third call finds 3 (1 running, 2 starting): null'
);

select is(
    (
        select ps.starting
        from prebuilds.preset_state as ps
        where ps.preset_id = fixture.preset_of('in-hours')
    ),
    2,
    'preset_state shows the 2 prebuilds starting'
);

select is_empty(
    $$select * from prebuilds.reconciliation_actions where action = 'create'$$,
    'and the plan at now() wants no more creates anywhere'
);

select * from finish();
rollback;
