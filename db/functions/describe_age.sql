-- Internal: an age in the largest whole unit, for reasons an operator reads ("2 days",
-- "5 hours", "1 minute"). Used by the plan's cleanup reasons and cleanup_prebuilds.

create function prebuilds.describe_age(p_age interval)
returns text
language sql
immutable
parallel safe
return (
    select
        case
            when s.secs >= 86400 then (s.secs / 86400)::text || ' day'
            when s.secs >= 3600 then (s.secs / 3600)::text || ' hour'
            when s.secs >= 60 then (s.secs / 60)::text || ' minute'
            else s.secs::text || ' second'
        end
        || case
            when s.secs / (
                    case
                        when s.secs >= 86400 then 86400
                        when s.secs >= 3600 then 3600
                        when s.secs >= 60 then 60
                        else 1
                    end
                ) = 1 then ''
            else 's'
        end
    from (select greatest(floor(extract(epoch from p_age)), 0)::bigint as secs) as s
);

comment on function prebuilds.describe_age(interval) is
'Internal: p_age in its largest whole unit, e.g. ''2 days'', ''1 hour'', ''30 seconds''.';
