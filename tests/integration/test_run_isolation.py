"""Each test run has its own database and broker names, and removes them afterwards."""

from __future__ import annotations

import uuid

from tests import conftest
from tests.support import resources
from ubi.integrations.broker import declare_topology


def test_names_are_unique_to_this_run(settings, database) -> None:
    assert conftest.RUN_ID in settings.database_url
    assert settings.queue_prefix == f"t{conftest.RUN_ID}."
    assert settings.queue_name("ingest") == f"t{conftest.RUN_ID}.ingest"
    assert resources.database_exists(conftest.PG_ADMIN_URL, conftest.DB_NAME)


def test_cleanup_removes_a_runs_database_and_broker_objects(settings, broker) -> None:
    other = f"t{uuid.uuid4().hex[:10]}."
    other_settings = settings.replace(queue_prefix=other)
    import celeryconfig

    # celeryconfig names come from this run's prefix; declare another run's signal topology and
    # this module's helper removes it completely.
    declared = declare_topology(settings=other_settings)
    own = [n for n in declared["queues"] if n.startswith(other)]
    assert own and all(resources.queue_exists(settings.broker_url, n) for n in own)
    resources.delete_broker_objects(settings.broker_url,
                                    {"queues": own, "exchanges": [
                                        e for e in declared["exchanges"] if e.startswith(other)]})
    assert not any(resources.queue_exists(settings.broker_url, n) for n in own)
    assert celeryconfig.P("ingest").startswith(settings.queue_prefix)

    name = f"ubi_test_{uuid.uuid4().hex[:10]}"
    resources.create_database(conftest.PG_ADMIN_URL, name)
    assert resources.database_exists(conftest.PG_ADMIN_URL, name)
    resources.drop_database(conftest.PG_ADMIN_URL, name)
    assert not resources.database_exists(conftest.PG_ADMIN_URL, name)
