-- Internal: wake the reconciler loops (SPEC 6.1). Every commit that can change the plan calls it:
-- claim_prebuild, complete_job and the notify_plan_change triggers. The payload says what changed
-- for an operator who runs `listen prebuilds_reconcile` in psql; the loop only counts it.
-- Delivered at commit, never for a rolled-back transaction; identical payloads within one
-- transaction are delivered once.

create function prebuilds.notify_reconcile(p_what text)
returns void
language sql
volatile
begin atomic
    select pg_notify('prebuilds_reconcile', p_what);
end;

comment on function prebuilds.notify_reconcile(text) is
'Internal: pg_notify on channel prebuilds_reconcile with p_what (what changed), sent at commit.';
