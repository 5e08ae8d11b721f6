-- Operator-driven cleanup (SPEC 5.5): delete failed, stopped and quarantined prebuilds now,
-- whatever settings.failed_prebuild_retention says. Called by `prebuilds cleanup` (with its
-- filters, and p_dry_run for --dry-run, which reports exactly the rows a real run would act on).
-- Each workspace is re-checked under its row lock (skip locked: one a claim or a delete is busy
-- with is reported as skipped), so a claimed workspace is never deleted.

create function prebuilds.cleanup_prebuilds(
    p_kinds text[],
    p_organization text default null,
    p_template text default null,
    p_preset text default null,
    p_finished_before timestamptz default null,
    p_limit int default 100,
    p_dry_run bool default true
)
returns table (
    workspace_id uuid,
    workspace_name text,
    organization_name text,
    template_name text,
    template_version_name text,
    preset_name text,
    state text,
    finished_at timestamptz,
    error text,
    outcome text
)
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
    v_unknown text;
    v_settings prebuilds.settings;
    v_locked prebuilds.workspaces;
begin
    select k into v_unknown
    from unnest(p_kinds) as k
    where k is null or k not in ('failed', 'stopped', 'quarantined')
    limit 1;
    if found or coalesce(cardinality(p_kinds), 0) = 0 then
        raise exception
            'cleanup_prebuilds: kinds must be some of failed, stopped, quarantined (got %)',
            coalesce(quote_literal(v_unknown), 'none')
            using errcode = 'invalid_parameter_value';
    end if;
    if p_limit is null or p_limit not between 1 and 10000 then
        raise exception 'cleanup_prebuilds: limit must be between 1 and 10000 (got %)', p_limit
            using errcode = 'invalid_parameter_value';
    end if;
    select s.* into v_settings from prebuilds.settings as s;

    for workspace_id, workspace_name, organization_name, template_name, template_version_name,
        preset_name, state, finished_at, error, outcome in
        select
            c.workspace_id, c.workspace_name, c.organization_name, c.template_name,
            c.template_version_name, c.preset_name, c.state, c.finished_at, c.error, null
        from (
            select
                w.id as workspace_id,
                w.name as workspace_name,
                o.name as organization_name,
                t.name as template_name,
                v.name as template_version_name,
                p.name as preset_name,
                case
                    when b.transition = 'delete' and j.status = 'failed'
                         and greatest(w.delete_failures, 1) > v_settings.delete_retry_limit
                        then 'quarantined'
                    when b.transition in ('start', 'stop') and j.status = 'failed'
                        then 'failed ' || b.transition
                    when b.transition = 'stop' and j.status = 'succeeded' then 'stopped'
                end as state,
                j.completed_at as finished_at,
                j.error
            from prebuilds.workspaces as w
            join prebuilds.workspace_builds as b on b.id = w.latest_build_id
            join prebuilds.provisioner_jobs as j on j.id = b.job_id
            join prebuilds.presets as p on p.id = w.current_preset_id
            join prebuilds.template_versions as v on v.id = p.template_version_id
            join prebuilds.templates as t on t.id = v.template_id
            join prebuilds.organizations as o on o.id = t.organization_id
            where w.owner_id = prebuilds.system_user_id()
              and not w.deleted
              and (p_organization is null or o.name = p_organization)
              and (p_template is null or t.name = p_template)
              and (p_preset is null or p.name = p_preset)
              and (p_finished_before is null or j.completed_at < p_finished_before)
        ) as c
        where c.state is not null
          and split_part(c.state, ' ', 1) = any(p_kinds)
        order by c.finished_at, c.workspace_id
        limit p_limit
    loop
        if p_dry_run then
            outcome := 'would delete';
            return next;
            continue;
        end if;
        -- Re-check under the row lock: still a prebuild, and still in the state listed.
        select w.* into v_locked
        from prebuilds.workspaces as w
        where w.id = workspace_id
        for no key update skip locked;
        if not found then
            outcome := 'skipped: busy (a claim or a delete holds it)';
        elsif v_locked.deleted or v_locked.owner_id <> prebuilds.system_user_id() then
            outcome := 'skipped: no longer a prebuild';
        elsif not exists (
            select from prebuilds.workspace_builds as b
            join prebuilds.provisioner_jobs as j on j.id = b.job_id
            where b.id = v_locked.latest_build_id
              and j.completed_at = finished_at
              and (j.status = 'failed' or (b.transition = 'stop' and j.status = 'succeeded'))
        ) then
            outcome := 'skipped: changed since it was listed';
        else
            perform prebuilds.queue_build(
                workspace_id,
                (select b.template_version_id from prebuilds.workspace_builds as b
                 where b.id = v_locked.latest_build_id),
                v_locked.current_preset_id, 'delete', prebuilds.system_user_id()
            );
            outcome := 'delete queued';
        end if;
        return next;
    end loop;
end;
$$;

comment on function prebuilds.cleanup_prebuilds(text[], text, text, text, timestamptz, int, bool) is
'Queues a delete build for each prebuild whose latest build failed (start or stop: kind failed), '
'stopped (stopped) or whose delete failed past delete_retry_limit (quarantined), filtered by '
'organization, template, preset and finish time, oldest first, at most p_limit; each re-checked '
'under its row lock. With p_dry_run, changes nothing and returns the same rows as ''would '
'delete''.';

revoke execute on function prebuilds.cleanup_prebuilds(
    text[], text, text, text, timestamptz, int, bool
) from public;
grant execute on function prebuilds.cleanup_prebuilds(
    text[], text, text, text, timestamptz, int, bool
) to prebuilds_reconciler;
