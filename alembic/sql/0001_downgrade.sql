-- Frozen downgrade of revision 0001: everything the project owns lives in one schema.
drop schema prebuilds cascade;
