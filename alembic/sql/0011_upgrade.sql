-- Revision 0011. Written by hand above the marker, in sections (one per piece of work).

-- >>> the apply path's server time (issue 9, apply throughput) ----------------------------------
-- Re-created below with the same signatures: create_prebuild with plan_cache_mode =
-- force_generic_plan, write_fence_key and reconcile_lock_held without `set search_path`
-- (inlinable), count_prebuild_event in PL/pgSQL. reconcile_lock_held's body names
-- write_fence_key and count_claim's names count_prebuild_event, so they go first (count_claim is
-- re-created unchanged). db/grants/public.sql, re-frozen below, revokes PUBLIC's execute again.
drop function prebuilds.create_prebuild(uuid);
drop function prebuilds.reconcile_lock_held(bigint, int);
drop function prebuilds.write_fence_key(bigint, int);
drop function prebuilds.count_claim(uuid, bool);
drop function prebuilds.count_prebuild_event(uuid, text);
-- <<< the apply path's server time ----------------------------------------------------------------

-- >>> frozen objects: written by `prebuilds freeze`, edit only above this line

-- >>> db/functions/count_prebuild_event.sql
-- Internal: add one to a preset's lifetime counter, in the transaction of the event itself.
-- The row is the preset's shard for this backend (pg_backend_pid() % 16): claims of one preset
-- from concurrent connections update different rows instead of queueing on one until commit
-- (bench/claims.py measured it). Readers sum the shards. PL/pgSQL, not `begin atomic`, so the
-- upsert's plan is cached per backend: PostgreSQL 15 plans a SQL function's body on every call,
-- which cost every create and claim about 0.1 ms there (bench/apply_pieces.py --functions).

create function prebuilds.count_prebuild_event(p_preset_id uuid, p_event text)
returns void
language plpgsql
volatile
set search_path = ''
as $$
begin
    insert into prebuilds.preset_counters as c (
        preset_id, shard, created, failed, claimed, missed, hung_failed, delete_retried
    )
    values (
        p_preset_id,
        pg_catalog.pg_backend_pid() % 16,
        (p_event = 'created')::int,
        (p_event = 'failed')::int,
        (p_event = 'claimed')::int,
        (p_event = 'missed')::int,
        (p_event = 'hung_failed')::int,
        (p_event = 'delete_retried')::int
    )
    on conflict (preset_id, shard) do update
        set
            created = c.created + excluded.created,
            failed = c.failed + excluded.failed,
            claimed = c.claimed + excluded.claimed,
            missed = c.missed + excluded.missed,
            hung_failed = c.hung_failed + excluded.hung_failed,
            delete_retried = c.delete_retried + excluded.delete_retried;
end;
$$;

comment on function prebuilds.count_prebuild_event(uuid, text) is
'Internal: increments preset_counters.<p_event> (created, failed, claimed, missed, hung_failed or '
'delete_retried) for a preset, in the shard row of the calling backend.';

-- >>> db/functions/count_claim.sql
-- Internal: record one call of claim_prebuild (SPEC 6.2), in the claim's own transaction: its
-- minute in claim_stats and the preset's lifetime counter (claimed or missed), each in the shard
-- row of the calling backend, so concurrent claims of one preset never queue on one row.

create function prebuilds.count_claim(p_preset_id uuid, p_hit bool)
returns void
language sql
volatile
begin atomic
    insert into prebuilds.claim_stats as c (preset_id, bucket, shard, hits, misses)
    values (
        p_preset_id,
        date_trunc('minute', now()),
        pg_backend_pid() % 16,
        p_hit::int,
        (not p_hit)::int
    )
    on conflict (preset_id, bucket, shard) do update
        set
            hits = c.hits + excluded.hits,
            misses = c.misses + excluded.misses;
    select prebuilds.count_prebuild_event(
        p_preset_id, case when p_hit then 'claimed' else 'missed' end
    );
end;

comment on function prebuilds.count_claim(uuid, bool) is
'Internal: counts a claim (p_hit) or a miss of a preset in claim_stats (this minute) and in '
'preset_counters (lifetime), in the shard rows of the calling backend.';

-- >>> db/functions/create_prebuild.sql
-- Apply a `create` action: one new prebuild for a preset (SPEC 4.5). Called by the driver.
-- Re-checks, under a lock on the preset row, that the preset is still active and still short;
-- the check reads only this preset's live prebuilds, so a create costs about its inserts.
-- Its statements always run their cached generic plans (plan_cache_mode below): with PL/pgSQL's
-- default choice the pool-size lookup (schedules), whose plan for one call looks cheaper than the
-- generic one once the time zone is folded in, was planned afresh on every create, 0.2-0.4 ms of
-- a create's ~0.7 ms of server time (bench/apply_pieces.py, README "Applying actions").

create function prebuilds.create_prebuild(p_preset_id uuid)
returns uuid
language plpgsql
set search_path = ''
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

    -- Running unexpired prebuilds plus those starting: what the pool will hold.
    select count(*) into v_have
    from prebuilds.workspaces as w
    join prebuilds.workspace_builds as b on b.id = w.latest_build_id
    join prebuilds.provisioner_jobs as j on j.id = b.job_id
    where w.current_preset_id = p_preset_id
      and w.owner_id = prebuilds.system_user_id()
      and not w.deleted
      and b.transition = 'start'
      and (
          (j.status = 'succeeded' and not prebuilds.is_expired(
              w.created_at, v_preset.ttl_seconds, v_preset.last_invalidated_at, now()))
          or (j.status in ('pending', 'running') and b.initiator_id = prebuilds.system_user_id())
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

-- >>> db/functions/write_fence_key.sql
-- The write fence of a reconcile lock key: the same 64 bits as two int4 halves, which
-- PostgreSQL keeps in a keyspace of its own (pg_locks.objsubid 2), so no new key is registered.
-- Every action takes it shared; start_run takes it exclusive (see start_run, apply_action). The
-- low half alone is also the class of the plan transactions' token locks (take_reconcile_lock).
-- No `set search_path`: a `begin atomic` body is parsed and bound when the function is created,
-- so the setting protected nothing, and it kept the planner from inlining the function into its
-- callers (every action called it three times; PostgreSQL 15 planned each call afresh).

create function prebuilds.write_fence_key(p_key bigint, p_half int)
returns int
language sql
immutable
parallel safe
begin atomic
    select (case when p_half = 1 then p_key >> 32 else p_key end)::bit(32)::int;
end;

comment on function prebuilds.write_fence_key(bigint, int) is
'Half p_half (1: high, 2: low 32 bits) of the reconcile lock key, as the int4 pair of the write '
'fence lock.';

-- >>> db/functions/reconcile_lock_held.sql
-- Does the plan transaction of a run still hold its lock? The reconciler's licence to write:
-- called by start_run and apply_action before every write of a cycle. The plan transaction
-- holds, besides the reconcile lock, an exclusive lock on a token of its own (a random int in
-- the two-int keyspace, class: the low half of the key; see take_reconcile_lock). Asking for
-- that token shared fails exactly while the plan transaction is alive: one lock-manager call,
-- no scan of pg_locks, and no other reconciler (which has a token of its own) can pass for it.
-- When it succeeds the caller raises, which releases it. No `set search_path` (bound at
-- creation, see write_fence_key), so callers get it inlined.

create function prebuilds.reconcile_lock_held(p_key bigint, p_token int)
returns bool
language sql
volatile
begin atomic
    select not pg_catalog.pg_try_advisory_xact_lock_shared(
        prebuilds.write_fence_key(p_key, 2), p_token
    );
end;

comment on function prebuilds.reconcile_lock_held(bigint, int) is
'True while the plan transaction that took lock p_key with token p_token is alive (its token '
'lock cannot be shared); the licence every write of a run checks. Call it in a transaction '
'that ends soon: when false it holds the token shared until then.';

-- >>> db/grants/public.sql
-- Nothing in schema prebuilds is callable by PUBLIC (SPEC 7): a role calls exactly the
-- functions granted to it (each function's file, db/grants/). Functions are executable by PUBLIC
-- when created, so this runs last; internal helpers are reached through the security definer
-- functions that call them. (`alter default privileges` cannot do this per schema: a per-schema
-- default only adds to the global one, which grants PUBLIC execute; changing the global one would
-- change every schema of the database. tests/test_roles.py checks that no function is left
-- executable by PUBLIC.)

revoke execute on all functions in schema prebuilds from public;
