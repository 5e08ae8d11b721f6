-- One cancel, fail_job or delete planned for a preset; preset_plan_at returns them as an ordered
-- array
-- so that reconciliation_actions_at can unnest them without reading the live prebuilds again.

create type prebuilds.planned_work as (
    action text,
    workspace_id uuid,
    reason text
);

comment on type prebuilds.planned_work is
'A planned cancel, fail_job or delete: action, target workspace and the reason an operator '
'reads.';
comment on column prebuilds.planned_work.action is 'cancel, fail_job or delete.';
comment on column prebuilds.planned_work.workspace_id is
'The workspace to cancel, delete, or whose hung job to fail.';
comment on column prebuilds.planned_work.reason is 'Why, in words (reconciliation_actions.reason).';
