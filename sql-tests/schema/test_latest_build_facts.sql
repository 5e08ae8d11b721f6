-- workspace_builds_track_latest copies the latest build's transition, created_at, initiator_id
-- and job_id onto its workspace (the plan reads them instead of the build): after every build,
-- by any writer, and never from an older build inserted late.
begin;
select plan(4);

create temp table ids on commit drop as
select
    fixture.prebuild(fixture.active_preset('web', 1), '2025-06-02 08:00Z') as ws,
    fixture.user('alice') as alice;

-- The facts of the build the pointer names, against the workspace's copies.
create function pg_temp.mismatches()
returns bigint
language sql
as $$
    select count(*)
    from prebuilds.workspaces as w
    inner join prebuilds.workspace_builds as b on w.latest_build_id = b.id
    where (
        w.latest_build_transition, w.latest_build_created_at, w.latest_build_initiator_id,
        w.latest_build_job_id
    ) is distinct from (b.transition, b.created_at, b.initiator_id, b.job_id);
$$;

select is(pg_temp.mismatches(), 0::bigint, 'a prebuild''s first build is copied');

-- A stop by a person, then a delete by the system: each becomes the copy.
do $$
begin
    perform fixture.build(ids.ws, 'stop', 'running', '2025-06-02 09:00Z', ids.alice)
    from ids;
end;
$$;
select results_eq(
    $$select w.latest_build_transition, w.latest_build_initiator_id = ids.alice
      from prebuilds.workspaces as w, ids where w.id = ids.ws$$,
    $$values ('stop'::text, true)$$,
    'a later build by someone else replaces the copy'
);
do $$
begin
    perform fixture.build(ids.ws, 'delete', 'pending', '2025-06-02 10:00Z') from ids;
end;
$$;
select is(pg_temp.mismatches(), 0::bigint, 'every workspace''s copy is its latest build''s');

-- Builds inserted out of order (an import): number 5, then 4 arriving late. The copy stays 5's.
with job as (
    insert into prebuilds.provisioner_jobs (initiator_id)
    select prebuilds.system_user_id() from generate_series(1, 2)
    returning id
),

numbered as (
    select job.id, 3 + row_number() over (order by job.id) as n from job
)

insert into prebuilds.workspace_builds (
    workspace_id, build_number, template_version_id, transition, initiator_id, job_id, created_at
)
select
    b.workspace_id,
    numbered.n,
    b.template_version_id,
    case numbered.n when 5 then 'stop' else 'start' end,
    b.initiator_id,
    numbered.id,
    '2025-06-02 11:00Z'::timestamptz + (5 - numbered.n) * interval '1 hour'
from prebuilds.workspace_builds as b, ids, numbered
where b.workspace_id = ids.ws and b.build_number = 1
order by numbered.n desc;
select results_eq(
    $$select w.latest_build_transition, w.latest_build_created_at
      from prebuilds.workspaces as w, ids where w.id = ids.ws$$,
    $$values ('stop'::text, '2025-06-02 11:00Z'::timestamptz)$$,
    'a lower-numbered build inserted late leaves the copy alone'
);

select * from finish();
rollback;
