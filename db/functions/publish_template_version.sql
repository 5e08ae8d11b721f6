-- Publish a template version and its presets (SPEC 7), the platform's one call per version:
-- creates the organization and the template when new, the version, its presets and their
-- schedules, in one transaction, and makes it the active version when p_activate. Versions are
-- immutable: publishing the same version again with the same presets (names and parameters) is a
-- no-op that returns the same id (and still activates it when asked); different presets are an
-- error. Bad input is rejected as a whole, with a message naming the preset and the field.
-- Called by the platform (role prebuilds_platform).

create function prebuilds.publish_template_version(
    p_organization text,
    p_template text,
    p_version text,
    p_presets jsonb,
    p_activate bool default true
)
returns uuid
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_organization_id uuid;
    v_template_id uuid;
    v_version_id uuid;
    v_preset jsonb;
    v_n bigint;
    v_label text;
    v_names text[] := '{}';
    v_given jsonb;
    v_published jsonb;
    v_scratch_id uuid;
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    perform prebuilds.check_name_argument('version name', p_version);
    if p_activate is null then
        raise exception 'invalid p_activate: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    if jsonb_typeof(p_presets) is distinct from 'array' then
        raise exception 'invalid presets: must be a JSON array of preset objects (got %)',
            coalesce(left(p_presets::text, 60), 'null')
            using errcode = 'invalid_parameter_value';
    end if;
    -- The shape of every preset first: nothing is written before the whole input looks right.
    for v_preset, v_n in
        select e.value, e.ordinality from jsonb_array_elements(p_presets) with ordinality as e
    loop
        v_label := case
            when jsonb_typeof(v_preset -> 'name') = 'string'
                then quote_literal(left(v_preset ->> 'name', 60))
            else '#' || v_n
        end;
        perform prebuilds.validate_pool_input(v_label, v_preset, true);
        if v_preset ->> 'name' = any(v_names) then
            raise exception 'invalid preset %: name is used by more than one preset', v_label
                using errcode = 'invalid_parameter_value';
        end if;
        v_names := v_names || (v_preset ->> 'name');
    end loop;

    insert into prebuilds.organizations (name) values (p_organization)
    on conflict (name) do nothing;
    select o.id into strict v_organization_id
    from prebuilds.organizations as o where o.name = p_organization;

    insert into prebuilds.templates (organization_id, name)
    values (v_organization_id, p_template)
    on conflict (organization_id, name) where not deleted do nothing;
    select t.id into strict v_template_id
    from prebuilds.templates as t
    where t.organization_id = v_organization_id and t.name = p_template and not t.deleted;

    insert into prebuilds.template_versions (template_id, name)
    values (v_template_id, p_version)
    on conflict (template_id, name) do nothing
    returning id into v_version_id;

    if v_version_id is not null then
        perform prebuilds.insert_presets(v_version_id, p_presets);
    else
        select v.id into strict v_version_id
        from prebuilds.template_versions as v
        where v.template_id = v_template_id and v.name = p_version;
        -- The values are checked as a first publish would check them (on a scratch version that
        -- is rolled back), so a bad retry is refused like a bad first call.
        begin
            insert into prebuilds.template_versions (template_id, name)
            values (v_template_id, 'scratch ' || gen_random_uuid())
            returning id into v_scratch_id;
            perform prebuilds.insert_presets(v_scratch_id, p_presets);
            raise exception using errcode = 'PBP00';
        exception
            when sqlstate 'PBP00' then null;
        end;
        select coalesce(jsonb_object_agg(e.value ->> 'name', coalesce(e.value -> 'parameters',
            '{}')), '{}')
        into v_given
        from jsonb_array_elements(p_presets) as e;
        select coalesce(jsonb_object_agg(p.name, p.parameters), '{}') into v_published
        from prebuilds.presets as p where p.template_version_id = v_version_id;
        if v_given <> v_published then
            raise exception
                'version % of template % in organization % is already published with other '
                'presets: versions are immutable (publish a new version)',
                quote_literal(p_version), quote_literal(p_template), quote_literal(p_organization)
                using errcode = 'invalid_parameter_value',
                      detail = format(
                          'published presets and parameters: %s; given: %s',
                          left(v_published::text, 400), left(v_given::text, 400)
                      );
        end if;
    end if;

    if p_activate then
        update prebuilds.templates as t
        set active_version_id = v_version_id
        where t.id = v_template_id and t.active_version_id is distinct from v_version_id;
    end if;
    return v_version_id;
end;
$$;

comment on function prebuilds.publish_template_version(text, text, text, jsonb, bool) is
'Creates version p_version of template p_template in organization p_organization (both created '
'when new) with the presets of p_presets, and activates it when p_activate; returns its id. The '
'same version with the same presets again is a no-op; other presets are an error.';

revoke execute on function prebuilds.publish_template_version(text, text, text, jsonb, bool)
from public;
grant execute on function prebuilds.publish_template_version(text, text, text, jsonb, bool)
to prebuilds_platform;
