-- Organizations own templates and workspaces.
-- Written by the platform; read by preset_plan_at for display names.

create table prebuilds.organizations (
    id uuid primary key default gen_random_uuid(),
    name text not null unique check (name <> '')
);

comment on table prebuilds.organizations is
'Tenants of the platform; templates and workspaces belong to one.';
comment on column prebuilds.organizations.id is 'Primary key.';
comment on column prebuilds.organizations.name is 'Unique, human-readable name.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.organizations
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
