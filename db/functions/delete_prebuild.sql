-- Apply a `delete` action: queue a delete build for a running prebuild (SPEC 4.5).
-- Called by the driver. Locks the workspace row, so it serialises with claim_prebuild: a
-- workspace claimed first is no longer a prebuild and is left alone.

create function prebuilds.delete_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_transition text;
    v_version_id uuid;
    v_status text;
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

    select b.transition, b.template_version_id, j.status
    into v_transition, v_version_id, v_status
    from prebuilds.workspace_builds as b
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where b.id = v_workspace.latest_build_id;
    -- Only a running prebuild: never one in flight, failed, canceled or stopped.
    if v_transition is distinct from 'start' or v_status is distinct from 'succeeded' then
        return false;
    end if;

    perform prebuilds.queue_build(
        p_workspace_id, v_version_id, v_workspace.current_preset_id, 'delete',
        prebuilds.system_user_id()
    );
    return true;
end;
$$;

comment on function prebuilds.delete_prebuild(uuid) is
'Queues a delete build for a workspace that is still a running prebuild; returns false (and does '
'nothing) when it was claimed, deleted, is in flight, failed or stopped.';
