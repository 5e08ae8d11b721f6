-- Trigger function: a preset's pool settings are checked when written, with a message that names
-- the column and the rule (the CHECK constraints stay as the backstop, but their message names
-- only the constraint and dumps the row). Called by the trigger presets_check_pool.

create function prebuilds.check_preset_pool()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
    v_problem text;
begin
    if new.name = '' or char_length(new.name) > 200 then
        v_problem := format('name must be 1 to 200 characters (got %s)', char_length(new.name));
    elsif new.desired_instances not between 0 and 10000 then
        v_problem := format(
            'desired_instances must be between 0 and 10000, or null for no pool (got %s)',
            new.desired_instances
        );
    elsif new.ttl_seconds < 0 or new.ttl_seconds between 1 and 59 then
        v_problem := format(
            'ttl_seconds must be null or 0 (no TTL), or at least 60 (got %s)', new.ttl_seconds
        );
    elsif new.max_instances not between 0 and 10000 then
        v_problem := format(
            'max_instances must be between 0 and 10000, or null for no demand sizing (got %s)',
            new.max_instances
        );
    elsif new.min_instances not between 0 and 10000 then
        v_problem := format(
            'min_instances must be between 0 and 10000, or null (got %s)', new.min_instances
        );
    elsif new.min_instances is not null and new.max_instances is null then
        v_problem := format(
            'min_instances (%s) needs max_instances: demand sizing is on only with a maximum',
            new.min_instances
        );
    elsif new.min_instances > new.max_instances then
        v_problem := format(
            'min_instances (%s) must not exceed max_instances (%s)',
            new.min_instances, new.max_instances
        );
    end if;
    if v_problem is not null then
        raise exception 'invalid preset %: %', quote_literal(left(new.name, 60)), v_problem
            using errcode = 'check_violation', table = 'presets', schema = 'prebuilds';
    end if;
    return new;
end;
$$;

comment on function prebuilds.check_preset_pool() is
'Trigger: rejects a preset whose name, desired_instances or ttl_seconds breaks its rule, naming '
'the column and the rule.';
