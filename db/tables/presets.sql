-- Presets: named parameter sets of one template version, each with an optional pool size.
-- Written by publish_template_version and configure_preset (pool settings), resume_preset and
-- invalidate_presets; read by the plan.

create table prebuilds.presets (
    id uuid primary key default gen_random_uuid(),
    template_version_id uuid not null references prebuilds.template_versions (id),
    name text not null check (name <> ''),
    desired_instances int check (desired_instances between 0 and 10000),
    ttl_seconds int check (ttl_seconds = 0 or ttl_seconds >= 60),
    scheduling_timezone text not null default '',
    last_invalidated_at timestamptz,
    failures_reset_at timestamptz,
    created_at timestamptz not null default now(),
    parameters jsonb not null default '{}' check (jsonb_typeof(parameters) = 'object'),
    min_instances int check (min_instances between 0 and 10000),
    max_instances int check (max_instances between 0 and 10000),
    unique (template_version_id, name),
    constraint presets_min_max_instances_check check (
        min_instances is null or (max_instances is not null and min_instances <= max_instances)
    )
);

comment on table prebuilds.presets is
'Named parameter sets of a template version. A preset with desired_instances (or schedules) has a'
' pool of prebuilds.';
comment on column prebuilds.presets.id is 'Primary key.';
comment on column prebuilds.presets.template_version_id is
'The template version; the preset is active only while this is its template''s active version.';
comment on column prebuilds.presets.name is 'Preset name, unique per template version.';
comment on column prebuilds.presets.desired_instances is
'Pool size when no schedule is in force, 0 to 10,000; null means no pool (existing prebuilds are '
'deleted).';
comment on column prebuilds.presets.ttl_seconds is
'Prebuilds older than this many seconds expire and are replaced; null or 0 disables, otherwise at'
' least 60.';
comment on column prebuilds.presets.scheduling_timezone is
'IANA time zone in which schedules are read; empty string means no schedules apply.';
comment on column prebuilds.presets.last_invalidated_at is
'Prebuilds created before this instant are expired (set by invalidation).';
comment on column prebuilds.presets.failures_reset_at is
'Builds created before this instant are ignored by backoff and the hard limit (set by '
'resume_preset).';
comment on column prebuilds.presets.created_at is 'When the preset was created.';
comment on column prebuilds.presets.parameters is
'What the provisioner builds: the preset''s parameter values, a JSON object (SPEC 7). Immutable '
'once published, like the version.';

comment on column prebuilds.presets.min_instances is
'Demand sizing (SPEC 6.3): the pool never shrinks below this; needs max_instances, at most it.';
comment on column prebuilds.presets.max_instances is
'Demand sizing (SPEC 6.3): set, the pool follows demand (claims in settings.demand_window × the '
'median build time) up to this many, and never below desired_instances or the schedule in force.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.presets
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
