-- Internal: queue the next build of a workspace with a fresh pending job; returns the job id.
-- Callers (create, delete, claim) hold the workspace row lock, so the build number is stable.
-- No `set search_path`: reached only from functions that run with search_path '' (execute is
-- revoked from public), every name qualified; one configuration save and restore less per call.

create function prebuilds.queue_build(
    p_workspace_id uuid,
    p_template_version_id uuid,
    p_preset_id uuid,
    p_transition text,
    p_initiator_id uuid
)
returns uuid
language plpgsql
as $$
declare
    v_job_id uuid;
begin
    insert into prebuilds.provisioner_jobs (initiator_id)
    values (p_initiator_id)
    returning id into v_job_id;

    insert into prebuilds.workspace_builds (
        workspace_id, build_number, template_version_id, preset_id, transition,
        initiator_id, job_id
    )
    select w.id, coalesce(w.latest_build_number, 0) + 1, p_template_version_id, p_preset_id,
           p_transition, p_initiator_id, v_job_id
    from prebuilds.workspaces as w
    where w.id = p_workspace_id;

    return v_job_id;
end;
$$;

comment on function prebuilds.queue_build(uuid, uuid, uuid, text, uuid) is
'Internal: appends the next build of a workspace with a pending job and returns the job id. The '
'caller must hold the workspace row lock.';
