-- Maintains the latest-build pointer on workspaces for every writer, not only our functions.
-- Builds are append-only: updating a build's number, workspace or preset is not supported.

create trigger workspace_builds_track_latest
after insert on prebuilds.workspace_builds
for each row execute function prebuilds.track_latest_build();

comment on trigger workspace_builds_track_latest on prebuilds.workspace_builds is
'Keeps workspaces.latest_build_* (the pointer and the build''s facts), current_preset_id and '
'delete_failures current.';
