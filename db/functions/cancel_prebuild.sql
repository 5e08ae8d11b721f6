-- Apply a `cancel` action: a queued initial build of an inactive preset (SPEC 4.5), or of an
-- active preset with more prebuilds on the way than it needs (SPEC 5.3). Called by the driver.
-- Cancels the job only if no provisioner has picked it up (acquire_job locks jobs with skip
-- locked, so exactly one of the two wins), records an orphan delete build
-- completed at once and marks the workspace deleted.

create function prebuilds.cancel_prebuild(p_workspace_id uuid)
returns bool
language plpgsql
set search_path = ''
as $$
declare
    v_workspace prebuilds.workspaces;
    v_build prebuilds.workspace_builds;
    v_preset prebuilds.presets;
    v_active bool;
    v_have int;
    v_orphan_job uuid;
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
    if v_build.build_number is distinct from 1 or v_build.transition <> 'start'
       or v_build.initiator_id <> prebuilds.system_user_id() then
        return false;
    end if;

    -- The preset's row lock (as create_prebuild takes it) makes the surplus below stable.
    select p.* into v_preset
    from prebuilds.presets as p
    where p.id = v_workspace.current_preset_id
    for no key update;
    select coalesce(t.active_version_id = v.id and not t.deleted and not t.deprecated, false)
    into v_active
    from prebuilds.template_versions as v
    join prebuilds.templates as t on t.id = v.template_id
    where v.id = v_preset.template_version_id;
    if v_active is null then
        return false;
    end if;
    if v_active then
        -- An active preset keeps its queued builds unless it still has a surplus: running
        -- unexpired prebuilds plus those starting (this one among them) beyond desired.
        select count(*) into v_have
        from prebuilds.workspaces as w
        join prebuilds.workspace_builds as b on b.id = w.latest_build_id
        join prebuilds.provisioner_jobs as j on j.id = b.job_id
        where w.current_preset_id = v_preset.id
          and w.owner_id = prebuilds.system_user_id()
          and not w.deleted
          and b.transition = 'start'
          and (
              (j.status = 'succeeded' and not prebuilds.is_expired(
                  w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
              or (j.status in ('pending', 'running')
                  and b.initiator_id = prebuilds.system_user_id())
          );
        if v_have <= coalesce(
            (select s.desired from prebuilds.preset_schedule_at(
                v_preset.id, v_preset.scheduling_timezone, now()) as s),
            v_preset.desired_instances,
            0
        ) then
            return false;
        end if;
    end if;

    update prebuilds.provisioner_jobs as j
    set canceled_at = now(), completed_at = now()
    where j.id = v_build.job_id
      and j.started_at is null and j.canceled_at is null and j.completed_at is null;
    if not found then
        return false;
    end if;

    -- The orphan delete: nothing was provisioned, so there is nothing for a provisioner to do.
    v_orphan_job := prebuilds.queue_build(
        p_workspace_id, v_build.template_version_id, v_build.preset_id, 'delete',
        prebuilds.system_user_id()
    );
    update prebuilds.provisioner_jobs
    set started_at = now(), completed_at = now()
    where id = v_orphan_job;

    update prebuilds.workspaces set deleted = true where id = p_workspace_id;
    return true;
end;
$$;

comment on function prebuilds.cancel_prebuild(uuid) is
'Cancels the still-unpicked initial build of a prebuild whose preset is inactive, or active with '
'more prebuilds running and starting than desired (re-checked under the preset''s row lock), '
'records an orphan delete build and marks the workspace deleted; false when a provisioner '
'already took the job, or the preset no longer has a surplus.';
