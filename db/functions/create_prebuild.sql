-- Apply a `create` action: one new prebuild for a preset (SPEC 4.5). Called by the driver.
-- Re-checks, under a lock on the preset row, that the preset is still active and still short;
-- the check reads only this preset's live prebuilds, so a create costs about its inserts.
-- Its statements always run their cached generic plans (plan_cache_mode below): with PL/pgSQL's
-- default choice the pool-size lookup (schedules), whose plan for one call looks cheaper than the
-- generic one once the time zone is folded in, was planned afresh on every create, 0.2-0.4 ms of
-- a create's ~0.7 ms of server time (bench/apply_pieces.py, README "Applying actions").
-- No `set search_path`: an internal helper, reached only through apply_action (security definer,
-- search_path ''), and every name in it is qualified; one setting fewer to apply and undo on
-- every create (revision 0015).

create function prebuilds.create_prebuild(p_preset_id uuid)
returns uuid
language plpgsql
set plan_cache_mode = force_generic_plan
as $$
declare
    v_preset prebuilds.presets;
    v_template prebuilds.templates;
    v_have int;
    v_workspace_id uuid;
begin
    -- `no key update` serialises creates for one preset without blocking foreign-key checks
    -- (claims and builds that reference the preset).
    select p.* into v_preset
    from prebuilds.presets as p
    where p.id = p_preset_id
    for no key update;
    if not found then
        return null;
    end if;

    select t.* into v_template
    from prebuilds.template_versions as v
    join prebuilds.templates as t on t.id = v.template_id
    where v.id = v_preset.template_version_id;
    if v_template.deleted or v_template.deprecated
       or v_template.active_version_id is distinct from v_preset.template_version_id then
        return null;
    end if;

    -- Running unexpired prebuilds plus those starting: what the pool will hold. The latest
    -- build's facts are read from the workspace (track_latest_build copies them), as the plan
    -- reads them; only each one's job is looked up.
    select count(*) into v_have
    from prebuilds.workspaces as w
    join prebuilds.provisioner_jobs as j on j.id = w.latest_build_job_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and w.latest_build_transition = 'start'
      and (
          (j.status = 'succeeded' and not prebuilds.is_expired(
              w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
          or (
              j.status in ('pending', 'running')
              and w.latest_build_initiator_id = prebuilds.system_user_id()
          )
      );
    -- The pool's size as the plan computes it (schedule, desired_instances, demand).
    if v_have >= (
        select s.desired
        from prebuilds.pool_size_at(
            p_preset_id, v_preset.desired_instances, v_preset.min_instances,
            v_preset.max_instances, v_preset.scheduling_timezone, true, now()
        ) as s
    ) then
        return null;
    end if;

    insert into prebuilds.workspaces (organization_id, template_id, owner_id, name)
    values (
        v_template.organization_id,
        v_template.id,
        prebuilds.system_user_id(),
        'prebuild-' || left(replace(gen_random_uuid()::text, '-', ''), 12)
    )
    returning id into v_workspace_id;

    perform prebuilds.queue_build(
        v_workspace_id, v_preset.template_version_id, p_preset_id, 'start',
        prebuilds.system_user_id()
    );
    perform prebuilds.count_prebuild_event(p_preset_id, 'created');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.create_prebuild(uuid) is
'Creates one prebuild (workspace, start build 1, pending job) for an active preset that is still '
'short of its desired size; returns the workspace id, or null when there is nothing to do any '
'more.';
