-- Apply a `delete` action: queue a delete build for a prebuild (SPEC 4.5, 5.1, 5.5): a running
-- one, one whose last delete failed and whose retry is due, or a failed or stopped one past
-- settings.failed_prebuild_retention. Called by the driver (through apply_action). Locks the
-- workspace row, so it serialises with claim_prebuild: a workspace claimed first is no longer a
-- prebuild and is left alone.

create function prebuilds.delete_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_settings prebuilds.settings;
    v_transition text;
    v_version_id uuid;
    v_status text;
    v_finished_at timestamptz;
    v_retry bool := false;
begin
    select w.* into v_workspace
    from prebuilds.workspaces as w
    where w.id = p_workspace_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
    for no key update;
    if not found then
        return false;
    end if;

    select b.transition, b.template_version_id, j.status, j.completed_at
    into v_transition, v_version_id, v_status, v_finished_at
    from prebuilds.workspace_builds as b
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where b.id = v_workspace.latest_build_id;
    select s.* into v_settings from prebuilds.settings as s;

    if v_transition = 'start' and v_status = 'succeeded' then
        null;  -- a running prebuild
    elsif v_transition = 'delete' and v_status = 'failed' then
        -- A retry: not quarantined, and its backoff is over (SPEC 5.1).
        if greatest(v_workspace.delete_failures, 1) > v_settings.delete_retry_limit
           or prebuilds.delete_retry_at(
               v_finished_at, v_workspace.delete_failures, v_settings.delete_retry_interval
           ) > now() then
            return false;
        end if;
        v_retry := true;
    elsif ((v_transition in ('start', 'stop') and v_status = 'failed')
           or (v_transition = 'stop' and v_status = 'succeeded'))
          and v_finished_at < now() - v_settings.failed_prebuild_retention then
        null;  -- failed or stopped, past the retention (SPEC 5.5)
    else
        -- Never one in flight, canceled, failed or stopped within its retention.
        return false;
    end if;

    perform prebuilds.queue_build(
        p_workspace_id, v_version_id, v_workspace.current_preset_id, 'delete',
        prebuilds.system_user_id()
    );
    if v_retry and v_workspace.current_preset_id is not null then
        perform prebuilds.count_prebuild_event(v_workspace.current_preset_id, 'delete_retried');
    end if;
    return true;
end;
$$;

comment on function prebuilds.delete_prebuild(uuid) is
'Queues a delete build for a prebuild that is still running, whose failed delete is due for a '
'retry (not quarantined), or that failed or stopped longer ago than failed_prebuild_retention; '
'returns false (and does nothing) otherwise: claimed, deleted, in flight, or not due.';
