-- prebuild_failures (SPEC 5.5): one row per failed build of a system-owned workspace, newest
-- first, with where it failed and the error; people's failures and canceled jobs are not listed.
begin;
select plan(3);

do $$
declare
    v_p uuid := fixture.active_preset('t', 1);
    v_alice uuid := fixture.user('alice');
    v_ws uuid;
begin
    perform fixture.prebuild(v_p, '2025-06-02 10:00Z', 'failed', p_name => 'start-failed');
    v_ws := fixture.prebuild(v_p, '2025-06-02 09:00Z', p_name => 'delete-failed');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 11:00Z');
    perform fixture.build(v_ws, 'delete', 'failed', '2025-06-02 11:30Z');
    perform fixture.prebuild(v_p, '2025-06-02 12:00Z', 'failed', p_owner => v_alice,
        p_name => 'alices');
    perform fixture.prebuild(v_p, '2025-06-02 12:00Z', 'canceled', p_name => 'canceled');
    -- A prebuild that failed, then was cleaned up: its failure stays visible.
    perform fixture.prebuild(v_p, '2025-06-02 08:00Z', 'failed', p_name => 'gone');
    update prebuilds.workspaces set deleted = true where name = 'gone';
end;
$$;

select results_eq(
    $$
    select failed_at, workspace_name, build_number, transition, error, workspace_deleted
    from prebuilds.prebuild_failures
    $$,
    $$
    values
        ('2025-06-02 11:30Z'::timestamptz, 'delete-failed', 3, 'delete', 'terraform apply failed',
         false),
        ('2025-06-02 11:00Z', 'delete-failed', 2, 'delete', 'terraform apply failed', false),
        ('2025-06-02 10:00Z', 'start-failed', 1, 'start', 'terraform apply failed', false),
        ('2025-06-02 08:00Z', 'gone', 1, 'start', 'terraform apply failed', true)
    $$,
    'newest first; people''s failures and canceled builds are not listed; deleted ones are'
);

select results_eq(
    $$
    select distinct organization_name, template_name, template_version_name, preset_name
    from prebuilds.prebuild_failures
    $$,
    $$values ('acme', 't', 'v1', 'default')$$,
    'each row says where: organization, template, version, preset'
);

select is(
    (select count(*)::int from prebuilds.prebuild_failures where failed_at > '2025-06-02 10:30Z'),
    2,
    'filtered by time'
);

select * from finish();
rollback;
