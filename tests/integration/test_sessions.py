"""The connection policy of every PostgreSQL session, and reads without a transaction."""

from __future__ import annotations

import sqlalchemy as sa

from ubi.models import read_scope, session_scope
from ubi.models.session import create_db_engine


def test_sessions_are_in_utc_and_keep_the_options_of_their_url(database) -> None:
    """``timezone=UTC`` goes with every connection; options the URL names are not replaced."""
    url = sa.engine.make_url(database).update_query_dict(
        {"options": "-c statement_timeout=1234"})
    for engine, timeout in ((create_db_engine(database), "0"),
                            (create_db_engine(url.render_as_string(hide_password=False)),
                             "1234ms")):
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW timezone").scalar() == "UTC"
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == timeout
        finally:
            engine.dispose()


def test_a_read_runs_in_autocommit_and_the_next_session_has_its_transaction(database) -> None:
    """``read_scope`` sends no BEGIN (its connection is in autocommit: no transaction is open
    after a SELECT); the connection goes back to the pool transactional for the next writer."""
    with read_scope() as session:
        session.execute(sa.text("SELECT 1"))
        conn = session.connection().connection.driver_connection
        assert conn is not None and conn.autocommit
        assert conn.info.transaction_status.name == "IDLE"
    with session_scope() as session:
        session.execute(sa.text("SELECT 1"))
        conn = session.connection().connection.driver_connection
        assert conn is not None and not conn.autocommit
        assert conn.info.transaction_status.name == "INTRANS"
