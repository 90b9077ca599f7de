from tests.integration.conftest import ingest_worker  # noqa: F401 - shared fixture
