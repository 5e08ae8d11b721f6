-- Change a preset's pool settings without publishing a version (SPEC 7): desired_instances,
-- ttl_seconds, scheduling_timezone, schedules, min_instances, max_instances. Keys not given are
-- left alone, JSON null clears, schedules given replace the preset's schedules. The same
-- validation and messages as publish_template_version; an error changes nothing. Called by the
-- platform.

create function prebuilds.configure_preset(p_preset_id uuid, p_pool jsonb)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_label text;
begin
    select quote_literal(left(p.name, 60)) into v_label
    from prebuilds.presets as p where p.id = p_preset_id
    for no key update;
    if not found then
        raise exception 'no preset with id %', coalesce(p_preset_id::text, 'null')
            using errcode = 'no_data_found';
    end if;
    perform prebuilds.validate_pool_input(v_label, p_pool, false);
    perform prebuilds.write_preset_pool(p_preset_id, p_pool);
end;
$$;

comment on function prebuilds.configure_preset(uuid, jsonb) is
'Sets the pool settings given in p_pool (desired_instances, ttl_seconds, scheduling_timezone, '
'schedules, min_instances, max_instances) of preset p_preset_id; keys not given are left alone, '
'null clears.';

revoke execute on function prebuilds.configure_preset(uuid, jsonb) from public;
grant execute on function prebuilds.configure_preset(uuid, jsonb) to prebuilds_platform;
