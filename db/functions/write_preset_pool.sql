-- Write a preset's pool settings from JSON that validate_pool_input accepted (SPEC 7): only the
-- keys given; JSON null clears (no pool, no TTL, no time zone, no schedules); `schedules` given
-- replaces the preset's schedules. The values are checked by the tables' own rules (the triggers
-- presets_check_pool, presets_check_timezone and preset_schedules_check); their messages gain the
-- preset and the field here. Called by publish_template_version and configure_preset, whose
-- transaction an error rolls back whole.

create function prebuilds.write_preset_pool(p_preset_id uuid, p_pool jsonb)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_label text;
    v_schedule jsonb;
    v_n bigint;
    v_message text;
    v_hint text;
begin
    select quote_literal(left(p.name, 60)) into strict v_label
    from prebuilds.presets as p where p.id = p_preset_id;

    if p_pool ?| array['desired_instances', 'ttl_seconds', 'min_instances', 'max_instances'] then
        -- presets_check_pool names the preset and the column.
        update prebuilds.presets as p
        set
            desired_instances = case
                when p_pool ? 'desired_instances' then (p_pool ->> 'desired_instances')::int
                else p.desired_instances
            end,
            ttl_seconds = case
                when p_pool ? 'ttl_seconds' then (p_pool ->> 'ttl_seconds')::int
                else p.ttl_seconds
            end,
            min_instances = case
                when p_pool ? 'min_instances' then (p_pool ->> 'min_instances')::int
                else p.min_instances
            end,
            max_instances = case
                when p_pool ? 'max_instances' then (p_pool ->> 'max_instances')::int
                else p.max_instances
            end
        where p.id = p_preset_id;
    end if;

    if p_pool ? 'scheduling_timezone' then
        begin
            update prebuilds.presets as p
            set scheduling_timezone = coalesce(p_pool ->> 'scheduling_timezone', '')
            where p.id = p_preset_id;
        exception
            when check_violation then
                get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint;
                -- presets_check_timezone says `invalid preset 'x': <why>`: name the field.
                perform prebuilds.raise_check_violation(
                    format(
                        'invalid preset %s: scheduling_timezone %s', v_label,
                        regexp_replace(v_message, '^invalid preset E?''(?:[^'']|'''')*'': ', '')
                    ),
                    v_hint
                );
        end;
    end if;

    if p_pool ? 'schedules' then
        delete from prebuilds.preset_schedules as s where s.preset_id = p_preset_id;
        for v_schedule, v_n in
            select e.value, e.ordinality
            from jsonb_array_elements(
                case when jsonb_typeof(p_pool -> 'schedules') = 'array'
                    then p_pool -> 'schedules' else '[]' end
            ) with ordinality as e
        loop
            begin
                insert into prebuilds.preset_schedules (
                    preset_id, cron_expression, desired_instances
                )
                values (p_preset_id, v_schedule ->> 'cron', (v_schedule ->> 'instances')::int);
            exception
                when check_violation then
                    get stacked diagnostics v_message = message_text, v_hint = pg_exception_hint;
                    perform prebuilds.raise_check_violation(
                        format('invalid preset %s: schedule #%s: %s', v_label, v_n, v_message),
                        v_hint
                    );
            end;
        end loop;
    end if;

    if (p_pool ? 'schedules' or p_pool ? 'scheduling_timezone') and exists (
        select from prebuilds.preset_schedules as s
        join prebuilds.presets as p on p.id = s.preset_id
        where s.preset_id = p_preset_id and p.scheduling_timezone = ''
    ) then
        -- The plan would ignore them (SPEC 4.3); a platform that sends them means something.
        raise exception 'invalid preset %: schedules need a scheduling_timezone (an IANA name '
            'such as Europe/Paris)', v_label
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.write_preset_pool(uuid, jsonb) is
'Writes the pool settings given in p_pool (validated by validate_pool_input) to preset '
'p_preset_id: desired_instances, ttl_seconds, scheduling_timezone, schedules (replaced).';
