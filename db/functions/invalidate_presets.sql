-- Invalidate the presets of a template's active version (all, or the one named p_preset): their
-- prebuilds created before now expire, and the next cycle replaces them (SPEC 4.2). For a new
-- image under an unchanged version. Called by the platform and `prebuilds invalidate`.

create function prebuilds.invalidate_presets(
    p_organization text, p_template text, p_preset text default null
)
returns int
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_template_id uuid := prebuilds.live_template_id(p_organization, p_template);
    v_count int;
begin
    if p_preset is not null then
        perform prebuilds.check_name_argument('preset name', p_preset);
    end if;
    update prebuilds.presets as p
    set last_invalidated_at = now()
    from prebuilds.templates as t
    where t.id = v_template_id and p.template_version_id = t.active_version_id
      and (p_preset is null or p.name = p_preset);
    get diagnostics v_count = row_count;
    if p_preset is not null and v_count = 0 then
        raise exception 'no preset % on the active version of template % in organization %',
            quote_literal(p_preset), quote_literal(p_template), quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    return v_count;
end;
$$;

comment on function prebuilds.invalidate_presets(text, text, text) is
'Sets last_invalidated_at to now for the presets (or preset p_preset) of the active version of '
'template p_template; returns how many.';

revoke execute on function prebuilds.invalidate_presets(text, text, text) from public;
grant execute on function prebuilds.invalidate_presets(text, text, text) to prebuilds_platform;
