-- Group role prebuilds_reader (SPEC 7): read only. The views preset_state and
-- reconciliation_actions, the run history and the names behind them (what `prebuilds status`,
-- `plan` and `history` read).
-- No login: grant it to the login role that does this job. Roles are cluster-wide, so it is
-- created only when missing (another database may have created it) and no downgrade drops it.

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_reader') then
        create role prebuilds_reader nologin;
        comment on role prebuilds_reader is
        'prebuilds: reads the pools, the plan and the run history.';
    end if;
exception
    -- Another database's migration created it at the same moment.
    when duplicate_object or unique_violation then null;
end;
$$;
