-- The plan: every unit of work at p_now, in the order to apply it (SPEC 3, 4.4).
-- The driver reads it through the view reconciliation_actions; tests call it directly.
--
-- A PL/pgSQL wrapper for one reason: its statement's plan is cached for the connection
-- (plan_cache_mode = force_generic_plan: planned once, on the first call), and the SQL functions
-- below it (planned_actions_at, preset_plan_at) are inlined into that one plan. A SQL function is
-- otherwise planned again on every call (about 5 ms at dogfood scale). The cache lives in the
-- server, so it works behind PgBouncer in transaction mode, where client-side prepared statements
-- do not. JIT is off: compiling this plan costs far more than running it (SPEC 3).

create function prebuilds.reconciliation_actions_at(p_now timestamptz)
returns table (
    seq int,
    preset_id uuid,
    action text,
    workspace_id uuid,
    reason text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    backoff_until timestamptz,
    deferred bool
)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_generic_plan
rows 100
as $$
begin
    return query select pa.* from prebuilds.planned_actions_at(p_now) as pa;
end;
$$;

comment on function prebuilds.reconciliation_actions_at(timestamptz) is
'Every action the reconciler would take at p_now, in order: cancel, delete, create (interleaved '
'across presets) and informational backoff rows; deferred marks work past '
'settings.max_actions_per_cycle, left for later cycles.';

-- The views call it with the privileges of whoever reads them; it reads the tables as its owner.
revoke execute on function prebuilds.reconciliation_actions_at(timestamptz) from public;
grant execute on function prebuilds.reconciliation_actions_at(timestamptz)
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
