-- Group role prebuilds_platform (SPEC 7): the workspace platform. Publishes
-- template versions, configures pools, claims prebuilds, invalidates, deprecates and deletes
-- templates, registers users, pauses and resumes; reads what prebuilds_reader reads.
-- No login: grant it to the login role that does this job. Roles are cluster-wide, so it is
-- created only when missing (another database may have created it) and no downgrade drops it.

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'prebuilds_platform') then
        create role prebuilds_platform nologin;
        comment on role prebuilds_platform is
        'prebuilds: the platform; publishes versions, configures pools, claims prebuilds.';
    end if;
exception
    -- Another database's migration created it at the same moment.
    when duplicate_object or unique_violation then null;
end;
$$;
