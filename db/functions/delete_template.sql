-- Delete a template (soft: templates.deleted = true). Its presets become inactive, so the next
-- cycles cancel their queued builds and delete their prebuilds (SPEC 4.1); its name can be used
-- again. Safe to call twice: false when there is no live template of that name any more. Called
-- by the platform.

create function prebuilds.delete_template(p_organization text, p_template text)
returns bool
language plpgsql
volatile
security definer
set search_path = ''
as $$
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    update prebuilds.templates as t
    set deleted = true
    from prebuilds.organizations as o
    where o.id = t.organization_id and o.name = p_organization and t.name = p_template
      and not t.deleted;
    if found then
        return true;
    end if;
    -- Nothing to delete: already deleted (a retry), or a name that never existed (a mistake).
    if not exists (
        select from prebuilds.templates as t
        join prebuilds.organizations as o on o.id = t.organization_id
        where o.name = p_organization and t.name = p_template
    ) then
        perform prebuilds.live_template_id(p_organization, p_template);
    end if;
    return false;
end;
$$;

comment on function prebuilds.delete_template(text, text) is
'Soft-deletes template p_template of organization p_organization; false when it is already '
'deleted, an error when it never existed.';

revoke execute on function prebuilds.delete_template(text, text) from public;
grant execute on function prebuilds.delete_template(text, text) to prebuilds_platform;
