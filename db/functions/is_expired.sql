-- The expiry rule (SPEC 4.2), shared by the plan and by create_prebuild's re-check.
-- A prebuild expires when created before the preset's last invalidation, or older than its TTL.

create function prebuilds.is_expired(
    p_created_at timestamptz,
    p_ttl_seconds int,
    p_last_invalidated_at timestamptz,
    p_now timestamptz
)
returns bool
language sql
immutable
parallel safe
return coalesce(p_created_at < p_last_invalidated_at, false)
or coalesce(
    p_ttl_seconds > 0
    and extract(epoch from p_now - p_created_at) > p_ttl_seconds,
    false
);

comment on function prebuilds.is_expired(timestamptz, int, timestamptz, timestamptz) is
'True when a prebuild created at p_created_at is expired at p_now: created before the last '
'invalidation, or older than ttl_seconds (> 0).';
