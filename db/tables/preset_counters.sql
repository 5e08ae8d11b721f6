-- Lifetime counts of prebuild events per preset, for metrics that survive restarts of the driver
-- and cost a few rows per preset to read (not a scan of build history). Incremented by
-- create_prebuild, claim_prebuild (claims and misses), complete_job, fail_job and delete_prebuild
-- through count_prebuild_event, each into the shard of its backend: concurrent claims of one
-- preset would otherwise queue on one row.

create table prebuilds.preset_counters (
    preset_id uuid not null references prebuilds.presets (id) on delete cascade,
    created bigint not null default 0 check (created >= 0),
    failed bigint not null default 0 check (failed >= 0),
    claimed bigint not null default 0 check (claimed >= 0),
    shard smallint not null default 0 check (shard between 0 and 15),
    missed bigint not null default 0 check (missed >= 0),
    hung_failed bigint not null default 0 check (hung_failed >= 0),
    delete_retried bigint not null default 0 check (delete_retried >= 0),
    primary key (preset_id, shard)
);

comment on table prebuilds.preset_counters is
'Lifetime prebuild events per preset, in up to 16 shard rows per preset (sum them): the source '
'of the prebuilds_*_total metrics.';
comment on column prebuilds.preset_counters.preset_id is 'The preset.';
comment on column prebuilds.preset_counters.created is 'Prebuilds created by create_prebuild.';
comment on column prebuilds.preset_counters.failed is
'Prebuild start builds that completed with an error.';
comment on column prebuilds.preset_counters.claimed is
'Prebuilds handed to people by claim_prebuild.';
comment on column prebuilds.preset_counters.hung_failed is
'Prebuild jobs failed by fail_job because they hung (SPEC 5.2).';
comment on column prebuilds.preset_counters.delete_retried is
'Deletes queued again by delete_prebuild after a failed delete (SPEC 5.1).';
comment on column prebuilds.preset_counters.shard is
'pg_backend_pid() % 16 of the backends that counted into this row: spreads concurrent claims of '
'one preset over rows. Meaningless on its own; a preset''s count is the sum over its shards.';
comment on column prebuilds.preset_counters.missed is
'Calls of claim_prebuild that found no eligible prebuild.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.preset_counters
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
