-- Every failed build of a prebuild, newest first (SPEC 5.5): what failed, where, when, and the
-- provisioner's error. For operators in psql, `prebuilds failures` and dashboards.
-- Cost follows the rows read: failed jobs come newest first from provisioner_jobs_failed_idx,
-- each joined by unique keys to its build, workspace, preset, version, template and organization;
-- a `limit` or a `failed_at >` filter stops the index scan early.

create view prebuilds.prebuild_failures as
select
    j.completed_at as failed_at,
    o.name as organization_name,
    t.name as template_name,
    v.name as template_version_name,
    p.name as preset_name,
    w.id as workspace_id,
    w.name as workspace_name,
    b.build_number,
    b.transition,
    j.error,
    j.id as job_id,
    j.worker_id,
    coalesce(b.preset_id, w.current_preset_id) as preset_id,
    w.deleted as workspace_deleted
from prebuilds.provisioner_jobs as j
inner join prebuilds.workspace_builds as b on j.id = b.job_id
inner join prebuilds.workspaces as w on b.workspace_id = w.id
inner join prebuilds.template_versions as v on b.template_version_id = v.id
inner join prebuilds.templates as t on v.template_id = t.id
inner join prebuilds.organizations as o on t.organization_id = o.id
left join prebuilds.presets as p on coalesce(b.preset_id, w.current_preset_id) = p.id
where
    j.error is not null
    and j.canceled_at is null
    -- The system user's fixed id (SPEC 2), spelled out: the roles that read this view may not
    -- call prebuilds.system_user_id(), and a view's function calls run as its reader.
    and w.owner_id = 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid
order by j.completed_at desc, j.id desc;

comment on view prebuilds.prebuild_failures is
'One row per failed build (start, stop or delete) of a system-owned workspace, newest first: '
'where it failed (organization, template, version, preset, workspace, build), when, and the '
'provisioner''s error.';
comment on column prebuilds.prebuild_failures.failed_at is 'When the job completed as failed.';
comment on column prebuilds.prebuild_failures.organization_name is 'Organization of the template.';
comment on column prebuilds.prebuild_failures.template_name is 'Template name.';
comment on column prebuilds.prebuild_failures.template_version_name is 'Version built.';
comment on column prebuilds.prebuild_failures.preset_name is
'Preset of the build (else the one the workspace counts in); null when neither names one.';
comment on column prebuilds.prebuild_failures.workspace_id is 'The prebuild.';
comment on column prebuilds.prebuild_failures.workspace_name is 'Its name.';
comment on column prebuilds.prebuild_failures.build_number is 'Which build of the workspace.';
comment on column prebuilds.prebuild_failures.transition is 'start, stop or delete.';
comment on column prebuilds.prebuild_failures.error is
'The provisioner''s error (or the reconciler''s, for a job failed as hung).';
comment on column prebuilds.prebuild_failures.job_id is 'The failed provisioner job.';
comment on column prebuilds.prebuild_failures.worker_id is
'Provisioner that ran the job; null when none picked it up.';
comment on column prebuilds.prebuild_failures.preset_id is 'The preset (preset_name).';
comment on column prebuilds.prebuild_failures.workspace_deleted is
'The workspace has been deleted since (cleaned up, or a later delete succeeded).';

grant select on prebuilds.prebuild_failures
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
