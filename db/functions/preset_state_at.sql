-- "Why is my pool not being filled?": one row per preset under consideration at p_now (SPEC 3).
-- Operators read it through the view preset_state; tests call it with fixed instants.
-- PL/pgSQL for its cached plan, with preset_plan_at inlined (see reconciliation_actions_at).
-- The plan columns come from preset_plan_at; the claim counts from claim_stats.

create function prebuilds.preset_state_at(p_now timestamptz)
returns table (
    preset_id uuid,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    is_active bool,
    desired int,
    actual int,
    eligible int,
    expired int,
    extraneous int,
    starting int,
    stopping int,
    deleting int,
    pending_cancelable int,
    failures int,
    backoff_until timestamptz,
    hard_limited bool,
    blocked_reason text,
    creates_planned int,
    schedule_note text,
    demand int,
    desired_reason text,
    claims_last_hour int,
    misses_last_hour int,
    last_error text,
    retrying_deletes int,
    quarantined int
)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
rows 200
as $$
begin
    return query
        select
            pp.preset_id,
            pp.organization_name,
            pp.template_name,
            pp.template_version_name,
            pp.preset_name,
            pp.is_active,
            pp.desired,
            pp.actual,
            pp.eligible,
            pp.expired,
            pp.extraneous,
            pp.starting,
            pp.stopping,
            pp.deleting,
            pp.pending_cancelable,
            pp.failures,
            pp.backoff_until,
            pp.hard_limited,
            pp.blocked_reason,
            pp.creates,
            pp.schedule_note,
            pp.demand,
            pp.desired_reason,
            cs.hits,
            cs.misses,
            pp.last_error,
            pp.retrying_deletes,
            pp.quarantined
        from prebuilds.preset_plan_at(p_now) as pp
        -- Claims in the hour before p_now (SPEC 6.2): the minute buckets that started in it,
        -- found through claim_stats' primary key.
        cross join lateral (
            select
                coalesce(sum(c.hits), 0)::int as hits,
                coalesce(sum(c.misses), 0)::int as misses
            from prebuilds.claim_stats as c
            where
                c.preset_id = pp.preset_id
                and c.bucket > p_now - interval '1 hour'
                and c.bucket <= p_now
        ) as cs
        order by
            pp.organization_name, pp.template_name, pp.template_version_name, pp.preset_name,
            pp.preset_id;
end;
$$;

comment on function prebuilds.preset_state_at(timestamptz) is
'Reconciliation state of every preset under consideration at p_now: counts, backoff, hard limit, '
'why creates are blocked; claims and misses in the last hour; and the self-healing state (last '
'error, deletes being retried, quarantined prebuilds).';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.preset_state_at(timestamptz) from public;
grant execute on function prebuilds.preset_state_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
