-- Trigger function: keeps workspaces.latest_build_* (the pointer and the build's own facts),
-- current_preset_id and delete_failures in step with the builds, so readers find a workspace's
-- state without scanning its history, and the plan without reading its build at all.
-- Called by the trigger workspace_builds_track_latest after every build insert.
-- Its update runs its cached generic plan (a primary-key lookup whatever the values): with
-- PL/pgSQL's default choice it was planned afresh for every build inserted, because the plan for
-- one row looks cheaper than the generic one (every claim, delete and create paid for it;
-- create_prebuild's own plan_cache_mode covered creates only; revision 0015).

create function prebuilds.track_latest_build()
returns trigger
language plpgsql
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
begin
    -- The comparison runs on the row version this update locks, so two builds inserted
    -- concurrently for one workspace still leave the higher number in place.
    update prebuilds.workspaces as w
    set latest_build_id = new.id,
        latest_build_number = new.build_number,
        latest_build_transition = new.transition,
        latest_build_created_at = new.created_at,
        latest_build_initiator_id = new.initiator_id,
        latest_build_job_id = new.job_id,
        current_preset_id = coalesce(new.preset_id, w.current_preset_id),
        -- Failed deletes in a row end the history: any other build ends the run. A delete build
        -- inserted already failed (an import, a test fixture) counts as one more.
        delete_failures = case
            when new.transition <> 'delete' then 0
            when exists (
                select from prebuilds.provisioner_jobs as j
                where j.id = new.job_id and j.status = 'failed'
            ) then w.delete_failures + 1
            else w.delete_failures
        end
    where w.id = new.workspace_id
      and (w.latest_build_number is null or w.latest_build_number < new.build_number);
    return null;
end;
$$;

comment on function prebuilds.track_latest_build() is
'Trigger: points workspaces.latest_build_id and current_preset_id at the newest build, copies '
'its transition, created_at, initiator_id and job_id, and resets delete_failures unless the new '
'build is a delete.';
