-- Provisioner side: finish a job (SPEC 4.5). A successful delete build marks its workspace
-- deleted, which removes it from the live prebuilds; a failed one counts in
-- workspaces.delete_failures (SPEC 5.1). Completing is also a last heartbeat (updated_at).
-- Used by the provisioners (prebuilds provision, the simulated one) and tests.
-- The completion of a prebuild's or a claim's job notifies the reconciler loops (SPEC 6.1).

create function prebuilds.complete_job(p_job_id uuid, p_error text default null)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_status text;
    v_workspace_id uuid;
    v_transition text;
    v_preset_id uuid;
    v_initiator_id uuid;
begin
    update prebuilds.provisioner_jobs as j
    set completed_at = now(), updated_at = now(), error = nullif(p_error, '')
    where j.id = p_job_id and j.completed_at is null and j.started_at is not null
    returning j.status into v_status;
    if not found then
        if not exists (select from prebuilds.provisioner_jobs as j where j.id = p_job_id) then
            raise exception 'complete_job: no provisioner job with id %', p_job_id
                using errcode = 'no_data_found';
        end if;
        return false;  -- already completed, or never started
    end if;

    select b.workspace_id, b.transition, b.preset_id, b.initiator_id
    into v_workspace_id, v_transition, v_preset_id, v_initiator_id
    from prebuilds.workspace_builds as b
    where b.job_id = p_job_id;
    if v_status = 'succeeded' and v_transition = 'delete' then
        update prebuilds.workspaces set deleted = true where id = v_workspace_id;
    elsif v_status = 'failed' and v_transition = 'delete' then
        -- One more failed delete at the end of the history (SPEC 5.1), unless a later build
        -- was added meanwhile.
        update prebuilds.workspaces as w
        set delete_failures = w.delete_failures + 1
        from prebuilds.workspace_builds as b
        where b.job_id = p_job_id and w.id = b.workspace_id and w.latest_build_id = b.id;
    elsif v_status = 'failed' and v_transition = 'start' and v_preset_id is not null
          and v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.count_prebuild_event(v_preset_id, 'failed');
    end if;
    -- The end of a prebuild's job, or of a claim's (a build with a preset), can change the plan
    -- (SPEC 6.1); people's other jobs cannot.
    if v_preset_id is not null or v_initiator_id = prebuilds.system_user_id() then
        perform prebuilds.notify_reconcile('job ' || p_job_id || ' ' || v_status);
    end if;
    return true;
end;
$$;

comment on function prebuilds.complete_job(uuid, text) is
'Completes a started job, failed when p_error is given; a successful delete marks the workspace '
'deleted, a failed delete adds to workspaces.delete_failures. False when the job was already '
'completed or never started.';
