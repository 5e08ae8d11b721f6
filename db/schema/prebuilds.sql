-- The schema that holds the platform model, the reconciler's views and its write functions.
-- Everything the project owns lives here; `alembic downgrade base` drops it whole.

create schema prebuilds;

comment on schema prebuilds is
'Prebuilt workspace pools: platform model, reconciliation views and write functions.';

-- The four group roles (db/roles/) reach the objects granted to them; PUBLIC reaches nothing.
grant usage on schema prebuilds
to prebuilds_reader, prebuilds_reconciler, prebuilds_platform, prebuilds_provisioner;
