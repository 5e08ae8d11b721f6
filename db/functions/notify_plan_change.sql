-- Trigger function (statement level, with transition tables): wake the reconciler loops when a
-- statement changed rows that the plan reads (SPEC 6.1): templates, presets, preset_schedules,
-- settings. One notification per statement, whatever the number of rows, so a bulk write (the
-- fleet generator, a migration) costs one; an update that changed nothing sends none.
-- TG_ARGV[0] is what the payload calls the rows (`template`); TG_ARGV[1], when given, the column
-- that names one (`id`): `template <id>` for one row, `template (12 rows)` for more.

create function prebuilds.notify_plan_change()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_keys text[];
begin
    -- Rows new or different after the statement (an update's unchanged rows cancel out), or the
    -- deleted ones. Static SQL on the transition tables each trigger declares for its event.
    if tg_op = 'INSERT' then
        select array_agg(distinct to_jsonb(n.*) ->> coalesce(tg_argv[1], ''))
        into v_keys
        from new_rows as n;
    elsif tg_op = 'DELETE' then
        select array_agg(distinct to_jsonb(o.*) ->> coalesce(tg_argv[1], ''))
        into v_keys
        from old_rows as o;
    else
        select array_agg(distinct c.row_json ->> coalesce(tg_argv[1], ''))
        into v_keys
        from (
            select to_jsonb(n.*) as row_json from new_rows as n
            except
            select to_jsonb(o.*) from old_rows as o
        ) as c;
    end if;
    if v_keys is null then
        return null;
    end if;
    perform prebuilds.notify_reconcile(
        tg_argv[0]
        || case
            when tg_nargs < 2 then ''
            when cardinality(v_keys) = 1 then ' ' || coalesce(v_keys[1], '')
            else ' (' || cardinality(v_keys) || ' rows)'
        end
    );
    return null;
end;
$$;

comment on function prebuilds.notify_plan_change() is
'Statement trigger: notifies prebuilds_reconcile with TG_ARGV[0] and the changed row''s '
'TG_ARGV[1] column (or a row count) when the statement inserted, changed or deleted rows.';
