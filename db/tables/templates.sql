-- Templates describe a kind of workspace; each has versions and one active version.
-- Written by the platform; read by preset_plan_at to decide which presets are active.

create table prebuilds.templates (
    id uuid primary key default gen_random_uuid(),
    organization_id uuid not null references prebuilds.organizations (id),
    name text not null check (name <> ''),
    active_version_id uuid,
    deleted bool not null default false,
    deprecated bool not null default false
);

-- Names are unique per organization among live templates only, so a deleted
-- template's name can be reused.
create unique index templates_organization_name_key
on prebuilds.templates (organization_id, name) where not deleted;

comment on table prebuilds.templates is
'Workspace templates. Only the active version of a live, non-deprecated template gets prebuilds.';
comment on column prebuilds.templates.id is 'Primary key.';
comment on column prebuilds.templates.organization_id is 'Owning organization.';
comment on column prebuilds.templates.name is
'Name, unique per organization among non-deleted templates.';
comment on column prebuilds.templates.active_version_id is
'The version new workspaces use; null until one is promoted. Presets of other versions are '
'inactive.';
comment on column prebuilds.templates.deleted is
'Soft delete: every preset of a deleted template is inactive.';
comment on column prebuilds.templates.deprecated is
'Deprecated templates keep their workspaces but get no new prebuilds.';
comment on index prebuilds.templates_organization_name_key is
'Template names are unique per organization among non-deleted templates.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.templates
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
