-- Deprecated and deleted templates (SPEC 4.1, 4.4): their presets are inactive, so every running
-- prebuild is deleted (oldest first), nothing is created, and queued initial builds are cancelled.
begin;
select plan(8);
-- The builds in flight here are alive: hung jobs (SPEC 5.2) are sql-tests/fail_job's subject.
update prebuilds.settings set job_heartbeat_timeout = '1 day', job_pending_timeout = '1 day';

do $$
declare
    -- 3 desired: the queued build is needed while the template is live (no surplus, SPEC 5.3).
    v_dep uuid := fixture.active_preset('dep', 3);
    v_del uuid := fixture.active_preset('del', 1);
begin
    perform fixture.prebuild(v_dep, '2025-06-02 10:00Z', p_name => 'dep2');
    perform fixture.prebuild(v_dep, '2025-06-02 09:00Z', p_name => 'dep1');
    perform fixture.prebuild(v_dep, '2025-06-02 11:00Z', 'starting', p_name => 'dep-queued');
    perform fixture.prebuild(v_del, '2025-06-02 10:00Z', p_name => 'del1');
end;
$$;

select is_empty(
    $$
    select * from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where workspace_id is not null
    $$,
    'while the templates are live nothing is deleted'
);

update prebuilds.templates set deprecated = true where name = 'dep';
update prebuilds.templates set deleted = true where name = 'del';

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array['delete:del1', 'cancel:dep-queued', 'delete:dep1', 'delete:dep2'],
    'all running prebuilds are deleted, the queued one cancelled, and nothing is created'
);

select results_eq(
    $$
    select workspace_id, reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    order by seq
    $$,
    $$
    values
        (fixture.ws('del1'), 'template del deleted'),
        (fixture.ws('dep-queued'), 'template dep deprecated: initial build still queued'),
        (fixture.ws('dep1'), 'template dep deprecated'),
        (fixture.ws('dep2'), 'template dep deprecated')
    $$,
    'the reasons say the template is deleted or deprecated'
);

select results_eq(
    $$
    select template_name, is_active, desired, actual, eligible, extraneous, pending_cancelable,
           hard_limited, backoff_until, blocked_reason, creates_planned
    from prebuilds.preset_state_at('2025-06-02 12:00Z')
    $$,
    $$
    values
        ('del', false, 0, 1, 0, 0, 0, false, null::timestamptz, null::text, 0),
        ('dep', false, 0, 2, 0, 0, 1, false, null, null, 0)
    $$,
    'both presets are inactive: desired 0, nothing eligible or extraneous, nothing blocked'
);

-- A template both deprecated and with a newer version: still inactive, still nothing created.
do $$
begin
    perform fixture.preset(fixture.new_version('dep', 'v2'), 'default', 2);
end;
$$;

select ok(
    not exists (
        select from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
        where action = 'create'
    ),
    'a deprecated template gets no creates, not even for its active version'
);

select is_empty(
    $$
    select * from prebuilds.preset_state_at('2025-06-02 12:00Z')
    where template_version_name = 'v2'
    $$,
    'the deprecated template''s active preset has nothing to clean up: not considered'
);

update prebuilds.templates set deprecated = false where name = 'dep';

select results_eq(
    $$select * from fixture.plan('2025-06-02 12:00Z')$$,
    array[
        'delete:del1', 'cancel:dep-queued', 'delete:dep1', 'delete:dep2',
        'create:default', 'create:default'
    ],
    'undeprecated, its v2 preset fills while v1 is cleaned up'
);

-- A template whose active version was unset: its presets are inactive too.
update prebuilds.templates set active_version_id = null where name = 'dep';

select results_eq(
    $$
    select distinct reason from prebuilds.reconciliation_actions_at('2025-06-02 12:00Z')
    where preset_id = fixture.preset_of('dep')
    $$,
    $$
    values
        ('template dep has no active version'),
        ('template dep has no active version: initial build still queued')
    $$,
    'no active version: everything of the template is cleaned up, nothing created'
);

select * from finish();
rollback;
