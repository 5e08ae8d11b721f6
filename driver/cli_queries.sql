-- Queries of the command-line surface only (driver/cli.py), in the format of queries.sql.

-- name: unknown_name
-- Which of the names an operator passed (organization, template, preset) matches nothing at all,
-- each looked up within the ones before it; null when every name given exists.
select
    case
        when
            %(organization)s::text is not null
            and not exists (
                select from prebuilds.organizations as o
                where o.name = %(organization)s
            )
            then 'organization'
        when
            %(template)s::text is not null
            and not exists (
                select from prebuilds.templates as t
                inner join prebuilds.organizations as o on o.id = t.organization_id
                where
                    t.name = %(template)s
                    and (%(organization)s::text is null or o.name = %(organization)s)
            )
            then 'template'
        when
            %(preset)s::text is not null
            and not exists (
                select from prebuilds.presets as p
                inner join prebuilds.template_versions as v on v.id = p.template_version_id
                inner join prebuilds.templates as t on t.id = v.template_id
                inner join prebuilds.organizations as o on o.id = t.organization_id
                where
                    p.name = %(preset)s
                    and (%(template)s::text is null or t.name = %(template)s)
                    and (%(organization)s::text is null or o.name = %(organization)s)
            )
            then 'preset'
    end as unknown;

-- name: failures
-- `prebuilds failures`: failed builds of prebuilds, newest first, narrowed by names and age. The
-- view reads failed jobs newest first from an index, so the limit bounds the work.
select
    f.failed_at,
    f.organization_name,
    f.template_name,
    f.template_version_name,
    f.preset_name,
    f.workspace_name,
    f.workspace_id,
    f.build_number,
    f.transition,
    f.error,
    f.worker_id,
    f.workspace_deleted
from prebuilds.prebuild_failures as f
where
    (%(organization)s::text is null or f.organization_name = %(organization)s)
    and (%(template)s::text is null or f.template_name = %(template)s)
    and (%(preset)s::text is null or f.preset_name = %(preset)s)
    and (%(transition)s::text is null or f.transition = %(transition)s)
    and (
        %(since_s)s::float8 is null
        or f.failed_at >= now() - make_interval(secs => %(since_s)s::float8)
    )
order by f.failed_at desc, f.job_id desc
limit %(limit)s;

-- name: cleanup
-- `prebuilds cleanup`: delete (or, dry run, list) failed, stopped and quarantined prebuilds
-- through prebuilds.cleanup_prebuilds, which re-checks each one under its row lock.
select
    c.workspace_id,
    c.workspace_name,
    c.organization_name,
    c.template_name,
    c.template_version_name,
    c.preset_name,
    c.state,
    c.finished_at,
    c.error,
    c.outcome
from prebuilds.cleanup_prebuilds(
    %(kinds)s::text [],
    %(organization)s,
    %(template)s,
    %(preset)s,
    case
        when %(older_than_s)s::float8 is not null
            then now() - make_interval(secs => %(older_than_s)s::float8)
    end,
    %(limit)s,
    %(dry_run)s
) as c;
