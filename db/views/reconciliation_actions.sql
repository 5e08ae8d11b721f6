-- What the next reconciliation cycle will do, now, and why. The driver's one read goes here.

create view prebuilds.reconciliation_actions as
select
    ra.seq,
    ra.preset_id,
    ra.action,
    ra.workspace_id,
    ra.reason,
    ra.organization_name,
    ra.template_name,
    ra.template_version_name,
    ra.preset_name,
    ra.backoff_until,
    ra.deferred
from prebuilds.reconciliation_actions_at(now()) as ra;

comment on view prebuilds.reconciliation_actions is
'The plan of the next reconciliation cycle: one row per unit of work in the order the driver '
'applies it. Empty while paused.';
comment on column prebuilds.reconciliation_actions.seq is 'Position in the plan, from 1.';
comment on column prebuilds.reconciliation_actions.preset_id is 'Preset the action is for.';
comment on column prebuilds.reconciliation_actions.action is
'cancel (queued initial build of an inactive preset, or beyond an active pool''s need), '
'fail_job (a hung job of a prebuild), delete (a running prebuild, a failed delete due for a '
'retry, a failed or stopped prebuild past its retention), create (one new prebuild, or a hard '
'limit''s probe) or backoff (informational: creates held back).';
comment on column prebuilds.reconciliation_actions.workspace_id is
'Workspace to cancel, delete or whose job to fail; null for create and backoff.';
comment on column prebuilds.reconciliation_actions.reason is 'Why, in words.';
comment on column prebuilds.reconciliation_actions.organization_name is
'Organization of the template.';
comment on column prebuilds.reconciliation_actions.template_name is 'Template name.';
comment on column prebuilds.reconciliation_actions.template_version_name is
'Version of the preset.';
comment on column prebuilds.reconciliation_actions.preset_name is 'Preset name.';
comment on column prebuilds.reconciliation_actions.backoff_until is
'For backoff rows: when creates may resume.';
comment on column prebuilds.reconciliation_actions.deferred is
'Past settings.max_actions_per_cycle: this cycle leaves it for the next ones.';

grant select on prebuilds.reconciliation_actions
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
