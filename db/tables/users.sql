-- Users own workspaces. The system user `prebuilds` owns every unclaimed prebuild.
-- Written by the platform (and the migration, for the system user).

create table prebuilds.users (
    id uuid primary key default gen_random_uuid(),
    username text not null unique check (username <> ''),
    is_system bool not null default false
);

comment on table prebuilds.users is
'People and system accounts that own workspaces.';
comment on column prebuilds.users.id is
'Primary key. The system user prebuilds has the fixed id c42fdf75-3097-471c-8c33-fb52454d81c0.';
comment on column prebuilds.users.username is 'Unique login name.';
comment on column prebuilds.users.is_system is
'True for accounts that are not people, such as the prebuilds owner.';
