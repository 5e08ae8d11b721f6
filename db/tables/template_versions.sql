-- Versions of a template. Old versions pile up for years; the reconciler must not pay for them.
-- Written by the platform.

create table prebuilds.template_versions (
    id uuid primary key default gen_random_uuid(),
    template_id uuid not null references prebuilds.templates (id),
    name text not null check (name <> ''),
    created_at timestamptz not null default now(),
    unique (template_id, name)
);

alter table prebuilds.templates
add constraint templates_active_version_id_fkey
foreign key (active_version_id) references prebuilds.template_versions (id);

comment on table prebuilds.template_versions is
'Immutable versions of a template; presets belong to one version.';
comment on column prebuilds.template_versions.id is 'Primary key.';
comment on column prebuilds.template_versions.template_id is 'The template this is a version of.';
comment on column prebuilds.template_versions.name is 'Version name, unique per template.';
comment on column prebuilds.template_versions.created_at is 'When the version was pushed.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.template_versions
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
