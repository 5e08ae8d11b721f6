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
