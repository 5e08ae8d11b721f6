-- The system user that owns every unclaimed prebuild, with Coder's fixed id so tooling ports over.

insert into prebuilds.users (id, username, is_system)
values (prebuilds.system_user_id(), 'prebuilds', true);
