-- Trigger function: the single row of prebuilds.settings cannot be deleted or truncated; every
-- cycle and operator command reads it. Called by the triggers settings_keep_row*.

create function prebuilds.keep_settings_row()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
    raise exception 'prebuilds.settings must keep its one row: update it instead of deleting it'
        using errcode = 'restrict_violation',
              hint = 'To stop reconciliation: update prebuilds.settings set '
                     'reconciliation_paused = true';
end;
$$;

comment on function prebuilds.keep_settings_row() is
'Trigger: refuses to delete or truncate the settings row.';
