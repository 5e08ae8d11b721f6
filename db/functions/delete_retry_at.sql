-- The delete retry schedule (SPEC 5.1), shared by the plan and delete_prebuild's re-check: retry
-- n (after n failed deletes in a row) is due p_interval * 2^(n-1) after the last failure, at most
-- one hour after it.

create function prebuilds.delete_retry_at(
    p_failed_at timestamptz,
    p_attempts int,
    p_interval interval
)
returns timestamptz
language sql
immutable
parallel safe
-- 2^20 times any positive interval is past the hour: the exponent stops there (no overflow).
return p_failed_at + least(
    p_interval * power(2, least(greatest(p_attempts, 1), 21) - 1),
    interval '1 hour'
);

comment on function prebuilds.delete_retry_at(timestamptz, int, interval) is
'When the retry of a delete that failed at p_failed_at, after p_attempts failed deletes in a '
'row, is due: p_interval * 2^(p_attempts - 1) later, capped at one hour.';
