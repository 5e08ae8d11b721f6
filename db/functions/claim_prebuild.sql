-- Hand an eligible prebuild to a person (SPEC 4.5). Called by the platform when a user creates a
-- workspace from a preset. Takes the oldest eligible prebuild with `skip locked`: a prebuild
-- being deleted is locked by delete_prebuild and skipped, so a claimed workspace is never deleted.
-- Every call is counted in claim_stats, a hit or a miss (SPEC 6.2), and notifies the reconciler
-- loops at commit (SPEC 6.1): the pool lost a prebuild, or demand grew (notify_claim: one
-- claim in flight at a time notifies for all).

create function prebuilds.claim_prebuild(p_preset_id uuid, p_owner_id uuid, p_name text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
    v_workspace_id uuid;
    v_version_id uuid;
begin
    if p_owner_id = prebuilds.system_user_id() then
        raise exception 'claim_prebuild: the system user cannot claim a prebuild'
            using errcode = 'invalid_parameter_value';
    end if;
    if coalesce(p_name, '') = '' then
        raise exception 'claim_prebuild: workspace name must not be empty'
            using errcode = 'invalid_parameter_value';
    end if;
    if not exists (select from prebuilds.users as u where u.id = p_owner_id) then
        raise exception 'claim_prebuild: no user with id %', p_owner_id
            using errcode = 'foreign_key_violation';
    end if;

    select w.id, b.template_version_id into v_workspace_id, v_version_id
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    join prebuilds.presets as p on p.id = w.current_preset_id
    join prebuilds.templates as t on t.active_version_id = p.template_version_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and not t.deleted
      and not t.deprecated
      and b.transition = 'start'
      and j.status = 'succeeded'
      and not prebuilds.is_expired(w.created_at, p.ttl_seconds, p.last_invalidated_at, now())
      and prebuilds.agents_ready(b.job_id)
    order by w.created_at, w.id
    limit 1
    for update of w skip locked;
    if not found then
        if not exists (select from prebuilds.presets as p where p.id = p_preset_id) then
            raise exception 'claim_prebuild: no preset with id %', p_preset_id
                using errcode = 'foreign_key_violation';
        end if;
        -- A miss is counted (SPEC 6.2) and wakes the loops too: demand sizing reads misses.
        perform prebuilds.count_claim(p_preset_id, false);
        perform prebuilds.notify_claim('claim ' || p_preset_id || ' miss');
        return null;
    end if;

    update prebuilds.workspaces
    set owner_id = p_owner_id, name = p_name
    where id = v_workspace_id;

    -- Initiated by the new owner: provisioners serve it first, and it never counts as a
    -- prebuild starting.
    perform prebuilds.queue_build(v_workspace_id, v_version_id, p_preset_id, 'start', p_owner_id);
    perform prebuilds.count_claim(p_preset_id, true);
    perform prebuilds.notify_claim('claim ' || p_preset_id || ' hit');
    return v_workspace_id;
end;
$$;

comment on function prebuilds.claim_prebuild(uuid, uuid, text) is
'Gives the oldest eligible prebuild of a preset to p_owner_id under the name p_name and queues '
'its start build; returns the workspace id, or null when none is eligible. Counts the call in '
'claim_stats and notifies prebuilds_reconcile.';

revoke execute on function prebuilds.claim_prebuild(uuid, uuid, text) from public;
grant execute on function prebuilds.claim_prebuild(uuid, uuid, text) to prebuilds_platform;
