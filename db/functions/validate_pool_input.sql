-- The shape of one preset as a platform passes it in JSON (SPEC 7): its keys and their JSON
-- types. Raises `invalid preset <p_preset>: <field> …`; the rules on values (bounds, time zones,
-- cron expressions, overlaps) are the tables' own, checked when written by write_preset_pool.
-- Called by publish_template_version (p_publishing: name and parameters allowed) and
-- configure_preset (pool settings only).

create function prebuilds.validate_pool_input(p_preset text, p_pool jsonb, p_publishing bool)
returns void
language plpgsql
immutable
set search_path = ''
as $$
declare
    v_pool_keys constant text[] := array[
        'desired_instances', 'ttl_seconds', 'scheduling_timezone', 'schedules',
        'min_instances', 'max_instances'
    ];
    v_version_keys constant text[] := array['name', 'parameters'];
    v_allowed text[] := case when p_publishing then v_version_keys else '{}' end || v_pool_keys;
    v_key text;
    v_value jsonb;
    v_schedule jsonb;
    v_n bigint;
    v_problem text;
begin
    if jsonb_typeof(p_pool) is distinct from 'object' then
        v_problem := format(
            'must be a JSON object with the keys %s (got %s)',
            array_to_string(v_allowed, ', '), coalesce(left(p_pool::text, 60), 'null')
        );
    end if;
    if v_problem is null then
        for v_key in select k from jsonb_object_keys(p_pool) as k order by k loop
            if v_key = any(v_version_keys) and not p_publishing then
                v_problem := format(
                    '%s cannot be changed: versions are immutable (publish a new version)', v_key
                );
            elsif not v_key = any(v_allowed) then
                v_problem := format(
                    'unknown key %s (expected %s)',
                    pg_catalog.to_json(v_key), array_to_string(v_allowed, ', ')
                );
            end if;
            exit when v_problem is not null;
        end loop;
    end if;
    if v_problem is null and p_publishing then
        v_value := p_pool -> 'name';
        if v_value is null then
            v_problem := 'name is required';
        elsif jsonb_typeof(v_value) <> 'string' then
            v_problem := format('name must be a string (got %s)', left(v_value::text, 60));
        end if;
        v_value := p_pool -> 'parameters';
        if v_problem is null and jsonb_typeof(v_value) <> 'object' then
            v_problem := format(
                'parameters must be a JSON object (got %s)', left(v_value::text, 60)
            );
        end if;
    end if;
    if v_problem is null then
        foreach v_key in array array[
            'desired_instances', 'ttl_seconds', 'min_instances', 'max_instances'
        ] loop
            v_value := p_pool -> v_key;
            if jsonb_typeof(v_value) <> 'null' and (
                jsonb_typeof(v_value) <> 'number' or v_value::text::numeric % 1 <> 0
            ) then
                v_problem := format(
                    '%s must be a whole number or null (got %s)', v_key, left(v_value::text, 60)
                );
            elsif jsonb_typeof(v_value) = 'number'
                and abs(v_value::text::numeric) > 2147483647 then
                v_problem := format('%s is out of range (got %s)', v_key, left(v_value::text, 60));
            end if;
            exit when v_problem is not null;
        end loop;
    end if;
    v_value := p_pool -> 'scheduling_timezone';
    if v_problem is null and jsonb_typeof(v_value) not in ('string', 'null') then
        v_problem := format(
            'scheduling_timezone must be a string, an IANA time zone name (got %s)',
            left(v_value::text, 60)
        );
    end if;
    v_value := p_pool -> 'schedules';
    if v_problem is null and jsonb_typeof(v_value) not in ('array', 'null') then
        v_problem := format(
            'schedules must be a list of {"cron", "instances"} objects or null (got %s)',
            left(v_value::text, 60)
        );
    end if;
    if v_problem is null and jsonb_typeof(v_value) = 'array' then
        for v_schedule, v_n in
            select e.value, e.ordinality from jsonb_array_elements(v_value) with ordinality as e
        loop
            if jsonb_typeof(v_schedule) <> 'object' then
                v_problem := format('must be an object {"cron", "instances"} (got %s)',
                    left(v_schedule::text, 60));
            elsif exists (
                select from jsonb_object_keys(v_schedule) as k where k not in ('cron', 'instances')
            ) then
                v_problem := format(
                    'unknown key %s (expected cron, instances)',
                    (select pg_catalog.to_json(k) from jsonb_object_keys(v_schedule) as k
                     where k not in ('cron', 'instances') order by k limit 1)
                );
            elsif jsonb_typeof(v_schedule -> 'cron') is distinct from 'string' then
                v_problem := format(
                    'cron must be a string such as "* 9-18 * * 1-5" (got %s)',
                    coalesce(left((v_schedule -> 'cron')::text, 60), 'nothing')
                );
            elsif jsonb_typeof(v_schedule -> 'instances') is distinct from 'number'
                or (v_schedule ->> 'instances')::numeric % 1 <> 0 then
                v_problem := format(
                    'instances must be a whole number (got %s)',
                    coalesce(left((v_schedule -> 'instances')::text, 60), 'nothing')
                );
            elsif (v_schedule ->> 'instances')::numeric not between 0 and 10000 then
                -- The bound of preset_schedules.desired_instances (revision 0004).
                v_problem := format(
                    'instances must be between 0 and 10000 (got %s)', v_schedule ->> 'instances'
                );
            end if;
            if v_problem is not null then
                v_problem := format('schedule #%s: %s', v_n, v_problem);
                exit;
            end if;
        end loop;
    end if;
    if v_problem is not null then
        raise exception 'invalid preset %: %', p_preset, v_problem
            using errcode = 'invalid_parameter_value';
    end if;
end;
$$;

comment on function prebuilds.validate_pool_input(text, jsonb, bool) is
'Raises unless p_pool is a preset (p_publishing) or a preset''s pool settings in the JSON shape of '
'SPEC 7, naming the preset p_preset and the field.';
