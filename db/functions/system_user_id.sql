-- The fixed id of the system user that owns unclaimed prebuilds (Coder's id, so tooling ports
-- over).
-- Used in every query and partial index that picks prebuilds out of all workspaces; it is
-- immutable and inlined, so `owner_id = prebuilds.system_user_id()` matches the partial indexes.

create function prebuilds.system_user_id()
returns uuid
language sql
immutable
parallel safe
return 'c42fdf75-3097-471c-8c33-fb52454d81c0'::uuid;

comment on function prebuilds.system_user_id() is
'Id of the system user prebuilds, owner of every unclaimed prebuild.';
