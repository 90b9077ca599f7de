"""Every primary and unique key of the tables that grow with data leads with ``tenant_id``,
so the schema can be distributed by tenant on Citus without change (docs/architecture.md,
"Outgrowing one PostgreSQL"): a distributed table's unique keys must contain the
distribution column, and leading with it keeps each tenant's rows together in every index."""

from __future__ import annotations

import sqlalchemy as sa

from ubi.models import Base

#: Tables that are not per-tenant data, with the reason each stays as it is.
EXEMPT = {
    "task_outbox": "the scheduler's queue, not tenant data: rows of every tenant (and global "
                   "tasks with no tenant) are drained by one scan; on Citus it stays a local "
                   "table of the coordinator",
    "audit_log": "records global acts (tenant_id null) as well as tenants' ones; append-only "
                 "by a surrogate id, on Citus a local table of the coordinator",
    "deletion_jobs": "requests to delete (a few per tenant a year), read by job id alone by "
                     "Data Governance, whose token may name no tenant; on Citus a local table "
                     "of the coordinator, like the audit log",
    "stream_subscriptions": "the deployment's subscriptions to the signal stream, by name "
                            "(one may filter on several tenants or none): configuration, on "
                            "Citus a reference table",
}

#: Per-tenant tables whose keys do not lead with tenant_id yet, and why it was not cheap (none
#: since migration 0018 gave the signal outbox (tenant_id, id)).
NOT_YET: dict[str, str] = {}


def _keys(table: sa.Table) -> list[tuple[str, list[str]]]:
    keys = [(f"primary key {table.primary_key.name}",
             [c.name for c in table.primary_key.columns])]
    keys += [(f"unique {c.name}", [col.name for col in c.columns])
             for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    keys += [(f"unique index {i.name}", [str(col.name) for col in i.columns])
             for i in table.indexes if i.unique]
    return keys


def test_every_key_of_tenant_data_leads_with_tenant_id() -> None:
    wrong = [f"{table.name}: {what} ({', '.join(columns)})"
             for table in Base.metadata.sorted_tables
             if table.name not in EXEMPT and table.name not in NOT_YET
             for what, columns in _keys(table) if columns[:1] != ["tenant_id"]]
    assert not wrong, "keys that do not lead with tenant_id:\n" + "\n".join(wrong)


def test_every_table_has_a_tenant_column_except_the_exempt() -> None:
    missing = [t.name for t in Base.metadata.sorted_tables
               if "tenant_id" not in t.columns and t.name not in EXEMPT]
    assert not missing


def test_the_lists_of_exceptions_are_current() -> None:
    """An exception whose table is gone or whose keys were fixed leaves the lists."""
    tables = Base.metadata.tables
    assert set(EXEMPT) | set(NOT_YET) <= set(tables)
    fixed = [name for name in NOT_YET
             if all(cols[:1] == ["tenant_id"] for _, cols in _keys(tables[name]))]
    assert not fixed, f"keys now lead with tenant_id: remove {fixed} from NOT_YET"
