"""On the embedded default the API process itself runs the follow-up tasks: events posted
over HTTP become features and evaluated days with nobody calling a task by hand.

(The web process imports only the tasks it sends; its follow-ups, features and detect, were
once sent by name to the in-process broker, where nothing consumed them.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.e2e.conftest import SERVER_VARS

SCRIPT = textwrap.dedent("""
    import json
    from datetime import timedelta

    import sqlalchemy as sa

    from ubi.demo.runner import prepare_environment

    settings = prepare_environment()
    from ubi import clock
    from ubi.demo.runner import demo_token, envelopes_to_lines, local_api, post_batches
    from ubi.services import schema
    from ubi.simulation.generator import generate

    schema.upgrade(settings)
    workload = generate(3, actors=20, teams=3, agents=2, weeks=6, instances=1,
                        end_day=clock.today() - timedelta(days=1), tenant_id="acme")
    lines = envelopes_to_lines(workload.envelopes)
    with local_api(settings) as base:
        summary = post_batches(base, demo_token(settings, "acme"), lines, progress=False)
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        out = {
            "accepted": summary.accepted, "envelopes": len(lines),
            "events": conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one(),
            "features": conn.execute(sa.text("SELECT count(*) FROM feature_days")).scalar_one(),
            "dirty": conn.execute(sa.text("SELECT count(*) FROM dirty_subjects")).scalar_one(),
            "evaluated_through": conn.execute(sa.text(
                "SELECT last_evaluated_day FROM ingestion_state "
                "WHERE tenant_id = 'acme'")).scalar_one(),
            "first_day": workload.envelopes[0]["occurred_at"][:10],
            "last_day": str(clock.today() - timedelta(days=1)),
        }
    print(json.dumps(out, default=str))
""")


def test_posted_events_flow_through_features_and_detection_in_process(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARS}
    env["UBI_DATA_DIR"] = str(tmp_path / "data")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["accepted"] == out["envelopes"] == out["events"]
    # Every dirty (actor, day) was taken by the features step the batches triggered...
    assert out["dirty"] == 0
    assert out["features"] > 0
    # ... and detection, triggered by the days that closed, evaluated the range. (The replay
    # posts a history ending yesterday, on the suite's clock: its days close by the data, the
    # last one once a later day's events arrive, so the clock does not close it.)
    assert out["evaluated_through"] is not None
    assert out["first_day"] < out["evaluated_through"] <= out["last_day"]
