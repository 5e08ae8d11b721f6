-- Claims per preset and minute, hits and misses (SPEC 6.2): how often a person found the pool
-- empty. Written by claim_prebuild through count_claim on every call; read by preset_state_at
-- (claims_last_hour, misses_last_hour); pruned by the driver (prune_claim_stats). Like
-- preset_counters, a minute of one preset is split in up to 16 shard rows (pg_backend_pid() % 16):
-- concurrent claims of one preset would otherwise queue on one row until commit. Readers sum.

create table prebuilds.claim_stats (
    preset_id uuid not null references prebuilds.presets (id) on delete cascade,
    bucket timestamptz not null check (bucket = date_trunc('minute', bucket)),
    shard smallint not null default 0 check (shard between 0 and 15),
    hits int not null default 0 check (hits >= 0),
    misses int not null default 0 check (misses >= 0),
    primary key (preset_id, bucket, shard)
);

-- Pruning deletes the oldest buckets of every preset.
create index claim_stats_bucket_idx on prebuilds.claim_stats (bucket);

comment on table prebuilds.claim_stats is
'Calls of claim_prebuild per preset and minute: hits (a prebuild was handed over) and misses (none '
'was eligible). Up to 16 shard rows per preset and minute: sum them.';
comment on column prebuilds.claim_stats.preset_id is 'The preset claimed from.';
comment on column prebuilds.claim_stats.bucket is 'Start of the minute (server time) of the calls.';
comment on column prebuilds.claim_stats.shard is
'pg_backend_pid() % 16 of the backends that counted into this row: spreads concurrent claims of '
'one preset over rows. Meaningless on its own.';
comment on column prebuilds.claim_stats.hits is 'Calls that handed a prebuild over.';
comment on column prebuilds.claim_stats.misses is 'Calls that found no eligible prebuild.';
comment on index prebuilds.claim_stats_bucket_idx is
'Buckets by age: pruning (settings.claim_stats_retention) reads the oldest first.';

-- Read by the operator commands, the platform and dashboards (db/roles/).
grant select on prebuilds.claim_stats
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform;
