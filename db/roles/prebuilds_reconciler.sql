-- Group role prebuilds_reconciler (SPEC 7): the driver. Reads the plan and the
-- settings, takes the reconcile lock, applies actions, records, logs and prunes runs, reads what
-- the metrics, `status`, `plan` and `history` read.
-- No login: grant it to the login role that does this job. Roles are cluster-wide, so it is
-- created only when missing (another database may have created it) and no downgrade drops it.

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_reconciler') then
        create role prebuilds_reconciler nologin;
        comment on role prebuilds_reconciler is
        'prebuilds: the reconciler; reads the plan, applies actions, records runs.';
    end if;
exception
    -- Another database's migration created it at the same moment.
    when duplicate_object or unique_violation then null;
end;
$$;
