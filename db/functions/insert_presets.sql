-- Insert the presets of a new template version from the JSON list publish_template_version
-- validated, with their pool settings and schedules (write_preset_pool). Called by
-- publish_template_version only.

create function prebuilds.insert_presets(p_version_id uuid, p_presets jsonb)
returns void
language plpgsql
volatile
set search_path = ''
as $$
declare
    v_preset jsonb;
    v_preset_id uuid;
begin
    for v_preset in select e.value from jsonb_array_elements(p_presets) as e loop
        -- presets_check_pool names a preset whose name is empty or too long.
        insert into prebuilds.presets (template_version_id, name, parameters)
        values (p_version_id, v_preset ->> 'name', coalesce(v_preset -> 'parameters', '{}'))
        returning id into v_preset_id;
        perform prebuilds.write_preset_pool(v_preset_id, v_preset - 'name' - 'parameters');
    end loop;
end;
$$;

comment on function prebuilds.insert_presets(uuid, jsonb) is
'Inserts the presets of p_presets (validated JSON, SPEC 7) into version p_version_id with their '
'pool settings and schedules.';
