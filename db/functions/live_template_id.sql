-- The live (non-deleted) template p_template of organization p_organization, or an error naming
-- what does not exist. Called by the platform functions that take a template by name.

create function prebuilds.live_template_id(p_organization text, p_template text)
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
    v_template_id uuid;
begin
    perform prebuilds.check_name_argument('organization name', p_organization);
    perform prebuilds.check_name_argument('template name', p_template);
    if not exists (select from prebuilds.organizations as o where o.name = p_organization) then
        raise exception 'no such organization %', quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    select t.id into v_template_id
    from prebuilds.templates as t
    join prebuilds.organizations as o on o.id = t.organization_id
    where o.name = p_organization and t.name = p_template and not t.deleted;
    if not found then
        raise exception 'no such template % in organization %', quote_literal(p_template),
            quote_literal(p_organization)
            using errcode = 'no_data_found';
    end if;
    return v_template_id;
end;
$$;

comment on function prebuilds.live_template_id(text, text) is
'Id of the non-deleted template p_template of organization p_organization; raises naming what '
'does not exist.';
