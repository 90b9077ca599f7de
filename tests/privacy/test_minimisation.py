"""PR-UBI-01: data minimisation at ingestion (SPEC §8)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.support.envelopes import envelope, post_events, wait_for_batch
from ubi.models import AuditEntry, Base, Event
from ubi.services import configs

SECRET = "sk_live_9f8e7d6c5b4a-NEVER-STORE"
EMAIL = "jane.doe+private@example.org"
SNIPPET = "def leaked(): return password"
RAW_ACTOR = "jane.doe@example.org"


def _all_text(session) -> str:
    """Every text and JSON value of every table, as one string."""
    chunks: list[str] = []
    for table in Base.metadata.sorted_tables:
        cols = [c for c in table.columns
                if isinstance(c.type, sa.String | sa.Text | sa.JSON)]
        if not cols:
            continue
        for row in session.execute(sa.select(*[sa.cast(c, sa.Text) for c in cols])):
            chunks.extend(str(v) for v in row if v is not None)
    return "\n".join(chunks)


def test_disallowed_and_tagged_properties_never_reach_the_store(
        client, tokens, db_session, ingest_worker) -> None:
    configs.save_config(db_session, "acme", {
        "allowed_properties": {"*": ["work_item_id"], "pr_reviewed": ["counterpart_actor_id"]},
    }, author="test-admin")
    db_session.commit()

    token = tokens("acme", "ubi:write:events")
    items = [
        envelope(actor=RAW_ACTOR, signal_type="commit_created",
                 payload={"secret_key": SECRET, "pii_email": EMAIL, "work_item_id": "WI-7"}),
        envelope(actor=RAW_ACTOR, signal_type="pr_reviewed",
                 payload={"counterpart_actor_id": "bob@example.org", "pii_email": EMAIL,
                          "snippet": {"value": SNIPPET,
                                      "privacy_tags": ["contains_code_snippet"]}}),
        envelope(actor=RAW_ACTOR, signal_type="file_edited",
                 resource={"repo": "acme/app", "file_path": "/home/jane/notes.txt",
                           "privacy_tags": ["contains_PI"]},
                 payload={"work_item_id": "WI-8", "pii_email": EMAIL}),
    ]
    resp = post_events(client, token, items)
    status = wait_for_batch(client, token, resp.json["batch_id"])
    assert status["counts"]["inserted"] == 3

    rows = {e.event_type: e for e in db_session.execute(sa.select(Event)).scalars()}
    assert rows["commit_created"].properties == {"work_item_id": "WI-7"}
    assert set(rows["pr_reviewed"].properties) == {"counterpart_actor_id"}
    assert rows["pr_reviewed"].properties["counterpart_actor_id"] != "bob@example.org"
    assert len(rows["pr_reviewed"].properties["counterpart_actor_id"]) == 64
    assert rows["file_edited"].properties == {} and rows["file_edited"].resource == {}
    assert rows["file_edited"].privacy_tags == ["contains_PI"]
    assert rows["commit_created"].resource == {}  # repo/branch are not on the allow-list

    audit = db_session.execute(sa.select(AuditEntry).where(
        AuditEntry.action == "ingest.dropped")).scalars().one()
    assert audit.details["disallowed_property_keys"] == {"secret_key": 1, "pii_email": 2,
                                                         "resource.repo": 2}
    assert audit.details["privacy_tagged_keys"] == {
        "snippet": 1, "work_item_id": 1, "pii_email": 1, "resource.repo": 1,
        "resource.file_path": 1}
    assert status["dropped"]["disallowed_property_keys"]["secret_key"] == 1

    everything = _all_text(db_session)
    for value in (SECRET, EMAIL, SNIPPET, RAW_ACTOR, "bob@example.org", "/home/jane"):
        assert value not in everything, value
    assert "secret_key" in everything  # the key name is audited, its value never stored
