-- What the role prebuilds_provisioner may call (SPEC 7): acquire jobs, complete them, report
-- agent lifecycle (heartbeat_job joins them with SPEC 5.2). Kept apart from the functions' own
-- files, whose bodies change with the provisioner work: these statements hold for any body.

alter function prebuilds.acquire_job(text) security definer set search_path = '';
revoke execute on function prebuilds.acquire_job(text) from public;
grant execute on function prebuilds.acquire_job(text) to prebuilds_provisioner;

alter function prebuilds.complete_job(uuid, text) security definer set search_path = '';
revoke execute on function prebuilds.complete_job(uuid, text) from public;
grant execute on function prebuilds.complete_job(uuid, text) to prebuilds_provisioner;

alter function prebuilds.report_agent_lifecycle(uuid, text, text)
security definer set search_path = '';
revoke execute on function prebuilds.report_agent_lifecycle(uuid, text, text) from public;
grant execute on function prebuilds.report_agent_lifecycle(uuid, text, text)
to prebuilds_provisioner;

alter function prebuilds.heartbeat_job(uuid) security definer set search_path = '';
revoke execute on function prebuilds.heartbeat_job(uuid) from public;
grant execute on function prebuilds.heartbeat_job(uuid) to prebuilds_provisioner;
