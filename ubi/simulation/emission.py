"""Event emission: each actor-day of the plan as SignalEnvelopes (SPEC §3).

- Rates per human workday (Poisson around personal habits, times a day-to-day busyness factor):
  about 4 commits (2-3 pushes), 6 file edits, 4 builds and 5 test runs with personal failure
  rates (8-15 % / 5-10 %), half a PR created, reviews and comments on teammates' PRs (about
  12 % of reviewers from another team), LLM requests on the work items in progress (2-4 per
  item and day; an item lasts a few days), 5 context switches, 2-3 focus sessions of 50-100
  minutes (a few in the evening, as the after-hours habit says), CI gate evaluations, and very
  rare policy violations / overrides. Every canonical event type occurs.
- Collaboration is simulated per PR: the author's ``pr_created`` names the requested reviewer,
  reviewers' ``pr_reviewed`` / ``pr_commented`` name the author, the author's replies and
  ``pr_merged`` / ``pr_closed`` name the reviewer (``payload.counterpart_actor_id``). LLM
  requests and commits carry ``payload.work_item_id``; ``focus_session_ended`` carries
  ``payload.duration_ms``.

Each event is placed at a local time of its actor (``occurred_at`` in the actor's own offset),
after hours as often as the actor's habit and the day's modifiers say; ``signal_id`` is a UUID5
of (tenant, seed, actor, sequence number), so the envelopes are the same for a seed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from ubi.simulation.organisation import WORK_END_H, WORK_START_H, Actor, weekday

SCHEMA_VERSION = "1.0"
_ID_NAMESPACE = uuid.UUID("6f0b7c1e-4d0e-5b8a-9a51-2c8f3d7e9b10")


class _Emitter:
    """Collects envelopes for actors, placing each event at a local time of the actor."""

    def __init__(self, start: date, tenant_id: str, seed: int) -> None:
        self.start = start
        self.tenant_id = tenant_id
        self.seed = seed
        self.rows: list[tuple[float, str, dict[str, Any]]] = []
        self.seq: dict[str, int] = defaultdict(int)

    def local_time(self, a: Actor, d: int, rng: np.random.Generator, *,
                   in_hours_only: bool = False) -> float:
        """Hours after local midnight of day ``d`` (may exceed 24 for after-midnight work)."""
        cum = a.hours.get(d)
        if cum is not None:  # a round-the-clock agent: an hour of the day's bursts
            hour = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
            return hour + float(rng.random())
        mods = a.mods.get(d, {})
        weekend = weekday(self.start, d) >= 5
        if a.actor_type == "human" and weekend:
            return float(rng.uniform(10.0, 23.5))
        ah = mods.get("after_hours", a.after_hours)
        if in_hours_only or a.after_hours_draw(rng) >= ah:
            return float(rng.uniform(WORK_START_H, WORK_END_H))
        if rng.random() < mods.get("late_share", a.late_share):
            return float(rng.uniform(22.0, 26.0))  # 22:00 - 02:00
        return float(rng.uniform(18.0, 22.0)) if rng.random() < 0.8 else float(
            rng.uniform(6.5, WORK_START_H))

    def emit(self, a: Actor, d: int, hour: float, event_type: str,
             payload: dict[str, Any] | None = None) -> None:
        tz = timezone(timedelta(minutes=a.offset_min))
        local = datetime(self.start.year, self.start.month, self.start.day, tzinfo=tz) + \
            timedelta(days=d, seconds=round(hour * 3600.0))
        utc = local.astimezone(UTC)
        n = self.seq[a.actor_id]
        self.seq[a.actor_id] = n + 1
        producer = _PRODUCER[event_type]
        signal_id = str(uuid.uuid5(_ID_NAMESPACE,
                                   f"{self.tenant_id}:{self.seed}:{a.actor_id}:{n}"))
        env: dict[str, Any] = {
            "signal_id": signal_id,
            "tenant_id": self.tenant_id,
            "actor_id": a.actor_id,
            "signal_kind": "event",
            "signal_type": event_type,
            "occurred_at": local.isoformat(),
            "ingested_at": (utc + timedelta(seconds=3 + n % 57)).isoformat().replace(
                "+00:00", "Z"),
            "resource": {"repo": f"sim-org/{a.team_id}", "branch": "main",
                         "service_name": producer, "actor_type": a.actor_type,
                         "team_id": a.team_id},
            "payload": payload or {},
            "schema_version": SCHEMA_VERSION,
            "environment": "production",
            "producer_id": producer,
            "sequence_no": n,
        }
        self.rows.append((utc.timestamp(), signal_id, env))


_PRODUCER: dict[str, str] = {
    **{t: "ide" for t in ("file_edited", "file_created", "file_deleted", "context_switch",
                          "focus_session_started", "focus_session_ended")},
    **{t: "ci" for t in ("build_failed", "build_succeeded", "test_failed", "test_passed",
                         "gate_evaluated", "policy_violation", "override_attempted")},
    **{t: "scm" for t in ("pr_created", "pr_merged", "pr_closed", "pr_reviewed",
                          "pr_commented", "commit_created", "commit_pushed")},
    **{t: "llm-gateway" for t in ("llm_request_submitted", "llm_request_completed",
                                  "llm_request_failed")},
}


def _pois(rng: np.random.Generator, lam: float) -> int:
    return int(rng.poisson(max(lam, 0.0)))


def emit_envelopes(people: list[Actor], by_id: Mapping[str, Actor],
                   teams: Mapping[str, list[str]], start: date, n_days: int, tenant_id: str,
                   seed: int, pr_rng: np.random.Generator) -> list[dict[str, Any]]:
    """The envelopes of every present actor-day, time-ordered, inside the UTC range of
    ``n_days`` days from ``start``: each actor's own work from its stream, then the pull
    requests (authors, reviewers, merges) from ``pr_rng``."""
    em = _Emitter(start, tenant_id, seed)
    item_counter: dict[str, int] = defaultdict(int)

    def work_item(a: Actor) -> str:
        item_counter[a.team_id] += 1
        return f"{a.team_id.upper()[:4]}-{item_counter[a.team_id]}"

    # Per-actor daily activity that does not involve anyone else.
    day_items: dict[tuple[str, int], list[str]] = {}
    for a in people:
        rng = a.rng
        agent = a.actor_type == "ai_agent"
        # Work items in progress: a human holds two at a time, an agent four; each is done
        # (and replaced by a new one) after a few days of work.
        items = [work_item(a) for _ in range(4 if agent else 2)]
        for d in sorted(a.present):
            x = a.present[d]
            mods = a.mods.get(d, {})
            items = [work_item(a) if rng.random() < (0.5 if agent else 0.3) else it
                     for it in items]
            # Source control and editing.
            for _ in range(_pois(rng, (6.0 if agent else 4.0) * x)):
                em.emit(a, d, em.local_time(a, d, rng), "commit_created",
                        {"work_item_id": items[int(rng.integers(len(items)))],
                         "files_changed": int(rng.integers(1, 8))})
            for _ in range(_pois(rng, 2.5 * x)):
                em.emit(a, d, em.local_time(a, d, rng), "commit_pushed")
            for et, lam in (("file_edited", 6.0), ("file_created", 0.6), ("file_deleted", 0.2)):
                for _ in range(_pois(rng, lam * x)):
                    em.emit(a, d, em.local_time(a, d, rng), et)
            # CI: builds, tests, gates, guardrails.
            runs = mods.get("builds", 1.0)
            bf = mods.get("build_fail", a.build_fail)
            tf = mods.get("test_fail", a.test_fail)
            for _ in range(_pois(rng, (6.0 if agent else 4.0) * x * runs)):
                failed = rng.random() < bf
                em.emit(a, d, em.local_time(a, d, rng),
                        "build_failed" if failed else "build_succeeded",
                        {"outcome": "failure" if failed else "success"})
            for _ in range(_pois(rng, (8.0 if agent else 5.0) * x * runs)):
                failed = rng.random() < tf
                em.emit(a, d, em.local_time(a, d, rng),
                        "test_failed" if failed else "test_passed",
                        {"outcome": "failure" if failed else "success"})
            for _ in range(_pois(rng, (6.0 if agent else 2.0) * x)):
                em.emit(a, d, em.local_time(a, d, rng), "gate_evaluated", {"outcome": "pass"})
            for et, key, lam in (("policy_violation", "violations", 0.05),
                                 ("override_attempted", "overrides", 0.05 if agent else 0.01)):
                for _ in range(_pois(rng, mods.get(key, lam) * (1.0 if key in mods else x))):
                    em.emit(a, d, em.local_time(a, d, rng), et, {"outcome": "blocked"})
            # LLM requests, grouped by work item.
            llm_items = items if agent else items[:1 + int(rng.random() < 0.5)]
            for item in llm_items:
                for _ in range(_pois(rng, a.llm_per_item * min(x, 1.5))):
                    hour = em.local_time(a, d, rng)
                    em.emit(a, d, hour, "llm_request_submitted", {"work_item_id": item})
                    failed = rng.random() < (0.06 if agent else 0.04)
                    em.emit(a, d, hour + 0.005, "llm_request_failed" if failed
                            else "llm_request_completed", {"work_item_id": item})
            day_items[(a.actor_id, d)] = items
            # Flow: context switches and focus sessions (humans work in sessions).
            for _ in range(_pois(rng, mods.get("switches", 1.0) * a.switches * min(x, 1.3))):
                em.emit(a, d, em.local_time(a, d, rng), "context_switch")
            if not agent and weekday(start, d) < 5:
                n_sessions = max(1, _pois(rng, 2.5 * mods.get("volume", 1.0)))
                slot = (WORK_END_H - WORK_START_H) / n_sessions
                evening = 18.25  # evening sessions follow one another, never overlap
                for i in range(n_sessions):
                    minutes = float(np.clip(rng.normal(a.focus_min * mods.get("focus", 1.0),
                                                       12.0), 10.0, slot * 60.0 - 5.0))
                    begin = WORK_START_H + i * slot + float(
                        rng.uniform(0.0, max(0.0, slot - minutes / 60.0)))
                    if a.after_hours_draw(rng) < mods.get("after_hours", a.after_hours):
                        # Some sessions happen in the evening, like the rest of the
                        # after-hours work (so the day's after-hours share is as planned).
                        begin = evening + float(rng.uniform(0.0, 0.5))
                        evening = begin + minutes / 60.0 + 0.1
                    em.emit(a, d, begin, "focus_session_started")
                    em.emit(a, d, begin + minutes / 60.0, "focus_session_ended",
                            {"duration_ms": int(minutes * 60_000)})

    # Pull requests: authors, reviewers (mostly teammates, some cross-team), merges.
    all_humans = [a for a in people if a.actor_type == "human"]
    for d in range(n_days):
        for a in people:
            if d not in a.present or (a.actor_type == "human" and weekday(start, d) >= 5):
                continue
            x = a.present[d]
            n_prs = _pois(pr_rng, a.pr_rate * a.mods.get(d, {}).get("prs", 1.0) * min(x, 1.5))
            for _ in range(n_prs):
                held = day_items.get((a.actor_id, d)) or [work_item(a)]
                _pull_request(em, a, d, by_id, teams, all_humans, pr_rng,
                              held[int(pr_rng.integers(len(held)))],
                              n_days)
    em.rows.sort(key=lambda r: (r[0], r[1]))
    first_s = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    last_s = first_s + n_days * 86400.0
    # Only events inside the UTC range: an office far west works into the next UTC day.
    return [env for t, _, env in em.rows if first_s <= t < last_s]


def _review_weight(r: Actor, d: int) -> float:
    mods = r.mods.get(d, {})
    return r.review_weight * mods.get("review", 1.0) * mods.get("collab", 1.0)


def _pull_request(em: _Emitter, author: Actor, d: int, by_id: Mapping[str, Actor],
                  teams: Mapping[str, list[str]], humans: list[Actor],
                  rng: np.random.Generator, item: str, n_days: int) -> None:
    """One PR of ``author`` created on day ``d``: reviews on the next days, then a merge."""
    mates = [by_id[m] for m in teams[author.team_id]
             if m != author.actor_id and by_id[m].actor_type == "human"]
    others = [h for h in humans if h.team_id != author.team_id]
    pool = others if (rng.random() < 0.12 or not mates) else mates
    weights = np.array([_review_weight(r, d) + 1e-9 for r in pool])
    n_rev = 1 if rng.random() < 0.7 else 2
    n_rev = min(n_rev, len(pool))
    reviewers = [pool[int(i)] for i in rng.choice(len(pool), size=n_rev, replace=False,
                                                  p=weights / weights.sum())]
    if author.actor_type == "human" and author.mods.get(d, {}).get("collab", 1.0) < 1.0 \
            and rng.random() > author.mods[d]["collab"]:
        reviewers = reviewers[:1]  # a withdrawn author asks fewer people
    em.emit(author, d, em.local_time(author, d, rng), "pr_created",
            {"counterpart_actor_id": reviewers[0].actor_id, "work_item_id": item})
    review_day = None
    for r in reviewers:
        rd = next((x for x in range(d, min(d + 4, n_days)) if x in r.present
                   and not (r.actor_type == "human" and weekday(em.start, x) >= 5)), None)
        if rd is None:
            continue
        review_day = rd if review_day is None else max(review_day, rd)
        em.emit(r, rd, em.local_time(r, rd, rng), "pr_reviewed",
                {"counterpart_actor_id": author.actor_id, "work_item_id": item})
        for _ in range(_pois(rng, 1.2 * r.mods.get(rd, {}).get("collab", 1.0))):
            em.emit(r, rd, em.local_time(r, rd, rng), "pr_commented",
                    {"counterpart_actor_id": author.actor_id, "work_item_id": item})
        if author.actor_type == "human" and rd in author.present:
            for _ in range(_pois(rng, 0.7 * author.mods.get(rd, {}).get("collab", 1.0))):
                em.emit(author, rd, em.local_time(author, rd, rng), "pr_commented",
                        {"counterpart_actor_id": r.actor_id, "work_item_id": item})
    if review_day is None:
        return
    # The author (or, for an agent's PR, its first reviewer) merges on the next present day.
    closer = author if author.actor_type == "human" else reviewers[0]
    md = next((x for x in range(review_day + int(rng.integers(0, 2)),
                                min(review_day + 5, n_days))
               if x in closer.present and weekday(em.start, x) < 5), None)
    if md is None:
        return
    counterpart = reviewers[0].actor_id if closer is author else author.actor_id
    closed = rng.random() < 0.08
    em.emit(closer, md, em.local_time(closer, md, rng), "pr_closed" if closed else "pr_merged",
            {"counterpart_actor_id": counterpart, "work_item_id": item})
