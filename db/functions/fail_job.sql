-- Apply a `fail_job` action (SPEC 5.2): complete the hung job of a prebuild's latest build as
-- failed, with an error that says why. Called by the driver (through apply_action). Re-checks,
-- under the workspace's and the job's row locks, that the job is still the system user's, still
-- hung at now(): a heartbeat or a completion that committed first wins, and the provisioner
-- learns from its next heartbeat (false) that the job is no longer its own.

create function prebuilds.fail_job(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_build prebuilds.workspace_builds;
    v_job prebuilds.provisioner_jobs;
    v_settings prebuilds.settings;
    v_error text;
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

    select b.* into v_build
    from prebuilds.workspace_builds as b
    where b.id = v_workspace.latest_build_id;
    -- People's jobs are never touched (SPEC 5.2).
    if not found or v_build.initiator_id <> prebuilds.system_user_id() then
        return false;
    end if;

    -- The job row lock waits for a heartbeat or a completion in progress, then reads its result.
    select j.* into v_job
    from prebuilds.provisioner_jobs as j
    where j.id = v_build.job_id
    for no key update;
    select s.* into v_settings from prebuilds.settings as s;
    if v_job.status = 'running'
       and coalesce(v_job.updated_at, v_job.started_at)
           < now() - v_settings.job_heartbeat_timeout then
        v_error := 'hung: no heartbeat for '
            || date_trunc('second', now() - coalesce(v_job.updated_at, v_job.started_at))::text;
    elsif v_job.status = 'pending'
          and v_job.created_at < now() - v_settings.job_pending_timeout then
        v_error := 'hung: not picked up for '
            || date_trunc('second', now() - v_job.created_at)::text;
    else
        return false;
    end if;

    update prebuilds.provisioner_jobs as j
    set started_at = coalesce(j.started_at, now()), completed_at = now(), error = v_error
    where j.id = v_job.id;

    -- From here on the ordinary rules apply: a failed start counts for backoff, a failed delete
    -- is retried.
    if v_build.transition = 'delete' then
        update prebuilds.workspaces as w
        set delete_failures = w.delete_failures + 1
        where w.id = p_workspace_id;
    elsif v_build.transition = 'start' and v_build.preset_id is not null then
        perform prebuilds.count_prebuild_event(v_build.preset_id, 'failed');
    end if;
    if v_workspace.current_preset_id is not null then
        perform prebuilds.count_prebuild_event(v_workspace.current_preset_id, 'hung_failed');
    end if;
    return true;
end;
$$;

comment on function prebuilds.fail_job(uuid) is
'Completes the hung job of a prebuild''s latest build as failed (error ''hung: no heartbeat '
'for …'' or ''hung: not picked up for …''), if the build is the system user''s and the job is '
'still running without a recent heartbeat or still pending past job_pending_timeout; false '
'otherwise.';
