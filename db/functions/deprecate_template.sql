-- Deprecate a template (or undo it with p_deprecated = false): its workspaces stay, its presets
-- get no new prebuilds and their prebuilds are deleted (SPEC 4.1). Called by the platform.

create function prebuilds.deprecate_template(
    p_organization text, p_template text, p_deprecated bool default true
)
returns void
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_template_id uuid := prebuilds.live_template_id(p_organization, p_template);
begin
    if p_deprecated is null then
        raise exception 'invalid p_deprecated: must be true or false, not null'
            using errcode = 'invalid_parameter_value';
    end if;
    update prebuilds.templates as t
    set deprecated = p_deprecated
    where t.id = v_template_id and t.deprecated <> p_deprecated;
end;
$$;

comment on function prebuilds.deprecate_template(text, text, bool) is
'Sets templates.deprecated of template p_template in organization p_organization to '
'p_deprecated; raises when there is no such live template.';

revoke execute on function prebuilds.deprecate_template(text, text, bool) from public;
grant execute on function prebuilds.deprecate_template(text, text, bool) to prebuilds_platform;
