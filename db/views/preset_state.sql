-- The state of every preset under consideration, now. For operators in psql and `prebuilds status`.

create view prebuilds.preset_state as
select
    ps.preset_id,
    ps.organization_name,
    ps.template_name,
    ps.template_version_name,
    ps.preset_name,
    ps.is_active,
    ps.desired,
    ps.actual,
    ps.eligible,
    ps.expired,
    ps.extraneous,
    ps.starting,
    ps.stopping,
    ps.deleting,
    ps.pending_cancelable,
    ps.failures,
    ps.backoff_until,
    ps.hard_limited,
    ps.blocked_reason,
    ps.creates_planned,
    ps.schedule_note,
    ps.claims_last_hour,
    ps.misses_last_hour,
    ps.demand,
    ps.desired_reason,
    ps.last_error,
    ps.retrying_deletes,
    ps.quarantined
from prebuilds.preset_state_at(now()) as ps;

comment on view prebuilds.preset_state is
'One row per preset under consideration now (active with a pool, or with prebuilds to clean up). '
'blocked_reason says why a pool is not being filled: paused, hard_limited, backoff or capped.';
comment on column prebuilds.preset_state.preset_id is 'The preset.';
comment on column prebuilds.preset_state.organization_name is 'Organization of the template.';
comment on column prebuilds.preset_state.template_name is 'Template name.';
comment on column prebuilds.preset_state.template_version_name is 'Version the preset belongs to.';
comment on column prebuilds.preset_state.preset_name is 'Preset name.';
comment on column prebuilds.preset_state.is_active is
'Version is the template''s active one and the template is neither deleted nor deprecated.';
comment on column prebuilds.preset_state.desired is
'Pool size wanted now (desired_reason says why); 0 when inactive.';
comment on column prebuilds.preset_state.actual is
'Running prebuilds: latest build a succeeded start, counted in this preset.';
comment on column prebuilds.preset_state.eligible is
'Running, unexpired and ready prebuilds: what a claim can take now (active presets only).';
comment on column prebuilds.preset_state.expired is
'Running prebuilds past the TTL or created before the last invalidation.';
comment on column prebuilds.preset_state.extraneous is
'Unexpired running prebuilds beyond desired; deleted oldest first (active presets only).';
comment on column prebuilds.preset_state.starting is 'Prebuild start builds pending or running.';
comment on column prebuilds.preset_state.stopping is 'Prebuild stop builds pending or running.';
comment on column prebuilds.preset_state.deleting is 'Prebuild delete builds pending or running.';
comment on column prebuilds.preset_state.pending_cancelable is
'Queued initial builds of an inactive preset that the next cycle cancels.';
comment on column prebuilds.preset_state.failures is
'Failed latest start builds within the backoff lookback (since the last resume).';
comment on column prebuilds.preset_state.backoff_until is
'Creates wait until this instant because of recent failures; null when not backing off.';
comment on column prebuilds.preset_state.hard_limited is
'The failure_hard_limit most recent builds all failed; creates stop until prebuilds resume-preset.';
comment on column prebuilds.preset_state.blocked_reason is
'Why wanted creates are held back: paused, hard_limited, backoff or capped; null otherwise.';
comment on column prebuilds.preset_state.creates_planned is 'Creates the next cycle will apply.';
comment on column prebuilds.preset_state.schedule_note is
'Which schedule sets desired now, or why the preset''s schedules are ignored (no time zone, '
'unknown zone, invalid or overlapping expressions); null when the preset has no schedules.';
comment on column prebuilds.preset_state.last_error is
'Error of the most recent failed start counted in failures; null when none.';
comment on column prebuilds.preset_state.retrying_deletes is
'Prebuilds whose delete failed and that wait for (or get) a retry with exponential backoff.';
comment on column prebuilds.preset_state.quarantined is
'Prebuilds whose delete failed more than settings.delete_retry_limit retries: no more retries; '
'see prebuilds.prebuild_failures, then delete them by hand or with prebuilds cleanup.';

comment on column prebuilds.preset_state.claims_last_hour is
'Claims that got a prebuild in the last hour (claim_stats hits).';
comment on column prebuilds.preset_state.misses_last_hour is
'Claims that found no eligible prebuild in the last hour (claim_stats misses).';
comment on column prebuilds.preset_state.demand is
'Demand-sized presets (max_instances set): ceil(claims in settings.demand_window × median build '
'time / window), the claims expected while a replacement builds; null otherwise.';
comment on column prebuilds.preset_state.desired_reason is
'Why desired is what it is: desired_instances, the schedule in force, or the demand sentence '
'(claims × build time = demand, min, max); inactive presets say why they are inactive.';

grant select on prebuilds.preset_state
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
