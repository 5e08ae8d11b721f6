-- Group role prebuilds_provisioner (SPEC 7): provisioners. Acquire jobs, send
-- heartbeats, complete jobs and report agent lifecycle; nothing else.
-- No login: grant it to the login role that does this job. Roles are cluster-wide, so it is
-- created only when missing (another database may have created it) and no downgrade drops it.

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_provisioner') then
        create role prebuilds_provisioner nologin;
        comment on role prebuilds_provisioner is
        'prebuilds: provisioners; acquire, heartbeat and complete jobs, report agents.';
    end if;
exception
    -- Another database's migration created it at the same moment.
    when duplicate_object or unique_violation then null;
end;
$$;
