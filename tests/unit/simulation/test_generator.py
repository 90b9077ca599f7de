"""The workload generator: deterministic, SPEC §3 envelopes, a realistic organisation, and a
ground truth that matches what was generated (every figure here is computed from the raw
envelopes, independently of the analytics)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta

import msgspec
import pytest

from tests.unit.simulation.sizes import SMALL
from ubi.analytics.envelope import decode_envelopes, validate_item
from ubi.analytics.taxonomy import CANONICAL_EVENT_TYPES, COLLABORATION_EVENT_TYPES
from ubi.analytics.tenant_config import TenantConfig
from ubi.simulation.generator import (
    PLANT_CLASSES,
    Workload,
    generate,
    read_truth,
    truth_path_for,
    write_jsonl,
    write_truth,
)


def local(env: dict) -> datetime:
    """occurred_at in the actor's own offset (as generated)."""
    return datetime.fromisoformat(env["occurred_at"])


def after_hours(ts: datetime) -> bool:
    """Default working hours: Monday-Friday 09:00-18:00 in the event's own offset."""
    return ts.weekday() >= 5 or not 9 <= ts.hour < 18


def by_actor(w: Workload) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for env in w.envelopes:
        out[env["actor_id"]].append(env)
    return out


def workdays(w: Workload, first: date, last: date) -> list[date]:
    """Local Monday-Friday dates in [first, last], without the organisation's holidays."""
    days, d = [], first
    while d <= last:
        if d.weekday() < 5 and d not in w.truth.holidays:
            days.append(d)
        d += timedelta(days=1)
    return days


def present_days(events: list[dict]) -> set[date]:
    """Local dates with events, not counting the tail of the night before (before 03:00)."""
    return {local(e).date() for e in events if local(e).hour >= 3}


def full_weeks(w: Workload) -> list[date]:
    """Mondays of the Monday-Sunday weeks inside the range."""
    first = w.truth.start_day + timedelta(days=-w.truth.start_day.weekday() % 7)
    return [first + timedelta(days=7 * i)
            for i in range((w.truth.end_day - first).days // 7 + 1)
            if first + timedelta(days=7 * i + 6) <= w.truth.end_day]


def noise_actors(w: Workload, kind: str) -> list[str]:
    return [n.actor_id for n in w.truth.noise if n.kind == kind]


def utc_offset(offset: str) -> timedelta:
    """An actor's ``utc_offset`` ("+05:30") as a timedelta."""
    delta = datetime.fromisoformat(f"2025-01-01T00:00:00{offset}").utcoffset()
    assert delta is not None
    return delta


def binomial_slack(p: float, n: int) -> float:
    """Three sigmas of a share over ``n`` events (an LLM request and its completion share
    one time, so about ``n / 1.5`` independent draws), plus 0.02 for after-midnight work
    that lands on a weekend day."""
    return 3 * (p * (1 - p) / (n / 1.5)) ** 0.5 + 0.02


# --- determinism and format --------------------------------------------------------------------

def test_same_seed_same_workload_other_seed_differs():
    a, b = generate(3, **SMALL), generate(3, **SMALL)
    assert a.envelopes == b.envelopes
    assert a.truth.as_dict() == b.truth.as_dict()
    c = generate(4, **SMALL)
    assert c.envelopes != a.envelopes
    assert c.truth.as_dict() != a.truth.as_dict()


def test_too_few_actors_is_a_clear_error():
    with pytest.raises(ValueError, match="too few"):
        generate(1, actors=22, teams=4, agents=3, weeks=6, instances=3)
    with pytest.raises(ValueError, match="mentoring"):
        generate(1, actors=20, teams=3, agents=3, weeks=6, instances=3)
    with pytest.raises(ValueError, match="weeks"):
        generate(1, weeks=4)


def test_envelopes_have_the_spec_shape_and_pass_validation(workload):
    envs = workload.envelopes
    truth = workload.truth
    config = TenantConfig.default()
    now = datetime.combine(truth.end_day + timedelta(days=1), time(), tzinfo=UTC)
    keys = {"signal_id", "tenant_id", "actor_id", "signal_kind", "signal_type", "occurred_at",
            "ingested_at", "resource", "payload", "schema_version"}
    for env in envs[::97]:  # a sample through the acceptance validator
        assert keys <= env.keys()
        _, error = validate_item(msgspec.json.encode(env), caller_tenant=truth.tenant_id,
                                 privileged=False, config_for=lambda _t: config, now=now)
        assert error is None, error
    assert {e["schema_version"] for e in envs} == {"1.0"}
    assert {e["signal_kind"] for e in envs} == {"event"}
    assert len({e["signal_id"] for e in envs}) == len(envs)
    assert len(decode_envelopes(msgspec.json.encode(envs))) == len(envs)
    # Every canonical event type occurs.
    assert set(Counter(e["signal_type"] for e in envs)) == set(CANONICAL_EVENT_TYPES)
    # Time-ordered, inside [start_day, end_day] in UTC.
    utc = [local(e).timestamp() for e in envs]
    assert utc == sorted(utc)
    assert datetime.fromisoformat(envs[0]["occurred_at"]).astimezone(UTC).date() >= \
        truth.start_day
    assert datetime.fromisoformat(envs[-1]["occurred_at"]).astimezone(UTC).date() <= \
        truth.end_day


def test_the_organisation_is_realistic(workload):
    truth = workload.truth
    sizes = sorted(len(m) for m in truth.teams.values())
    assert all(3 <= s <= 12 for s in sizes)
    assert sizes[0] < 5 and sum(s > 5 for s in sizes) >= 3
    assert 55 <= len(truth.actors) <= 65
    agents = {a.actor_id for a in truth.actors if a.actor_type == "ai_agent"}
    assert 3 <= len(agents) <= 10
    envs = workload.envelopes
    assert {e["resource"]["actor_type"] for e in envs if e["actor_id"] in agents} == {"ai_agent"}
    assert {e["resource"]["team_id"] for e in envs} == set(truth.teams)
    # Several time zones, each actor's events in its own offset.
    offsets = {local(e).utcoffset() for e in envs}
    assert len(offsets) >= 4
    offset_of = {a.actor_id: a.utc_offset for a in truth.actors}
    for e in envs[::501]:
        assert e["occurred_at"].endswith(offset_of[e["actor_id"]])


def test_collaboration_names_real_teammates_and_some_other_teams(workload):
    team_of = {a.actor_id: a.team_id for a in workload.truth.actors}
    collab = [e for e in workload.envelopes if e["signal_type"] in COLLABORATION_EVENT_TYPES]
    assert collab
    cross = 0
    for e in collab:
        other = e["payload"]["counterpart_actor_id"]
        assert other in team_of and other != e["actor_id"]
        cross += team_of[other] != team_of[e["actor_id"]]
    assert 0.04 < cross / len(collab) < 0.3


def test_payloads_carry_work_items_and_durations(workload):
    envs = workload.envelopes
    for kind in ("llm_request_submitted", "commit_created"):
        assert all(e["payload"].get("work_item_id") for e in envs if e["signal_type"] == kind)
    ended = [e for e in envs if e["signal_type"] == "focus_session_ended"]
    assert ended and all(e["payload"]["duration_ms"] > 0 for e in ended)
    # LLM requests cluster on work items: several requests per item.
    per_item = Counter(e["payload"]["work_item_id"] for e in envs
                       if e["signal_type"] == "llm_request_submitted")
    assert 2.0 < sum(per_item.values()) / len(per_item) < 40.0


def test_weekly_rhythm_and_the_holiday(workload):
    truth = workload.truth
    humans = {a.actor_id for a in truth.actors if a.actor_type == "human"}
    days = Counter(local(e).date() for e in workload.envelopes if e["actor_id"] in humans)
    weekday = [n for d, n in days.items() if d.weekday() < 5 and d not in truth.holidays]
    weekend = [days.get(d, 0) for d in days if d.weekday() >= 5]
    assert sum(weekend) / len(weekend) < 0.15 * sum(weekday) / len(weekday)
    [holiday] = truth.holidays
    assert days.get(holiday, 0) < 0.1 * sum(weekday) / len(weekday)


# --- ground truth ------------------------------------------------------------------------------

def test_truth_plants_every_class_on_distinct_actors_after_a_warm_up(workload):
    truth = workload.truth
    kind = {a.actor_id: a.actor_type for a in truth.actors}
    team_of = {a.actor_id: a.team_id for a in truth.actors}
    by_class = defaultdict(list)
    for p in truth.plants:
        by_class[p.signal_class].append(p)
        assert p.start_day >= truth.start_day + timedelta(days=14)
        assert p.end_day <= truth.end_day
        if p.signal_class == "engagement_drop":
            assert 6 <= (p.end_day - p.start_day).days <= 13
        else:
            assert p.end_day >= p.start_day + timedelta(days=13)
        assert set(p.magnitude) and all({"before", "during"} <= set(v)
                                        for v in p.magnitude.values())
    assert set(by_class) == set(PLANT_CLASSES)
    assert all(len(v) >= 3 for v in by_class.values())
    assert len({p.actor_id for p in truth.plants}) == len(truth.plants)
    assert all(kind[p.actor_id] == "ai_agent" for p in by_class["guardrail_overrides"])
    mentors = by_class["mentoring_potential"]
    assert len({team_of[p.actor_id] for p in mentors}) == len(mentors)
    assert all(len(truth.teams[team_of[p.actor_id]]) >= 5 for p in mentors)
    assert all(p.start_day >= truth.start_day + timedelta(days=21)
               for c, ps in by_class.items() if c != "mentoring_potential" for p in ps)


def test_burnout_after_hours_share_rises_by_the_planned_amount(workload):
    """Issue 6: the planted burnout actor's after-hours share really rises as planned."""
    events = by_actor(workload)
    falls: list[tuple[float, float]] = []
    for plant in workload.truth.plants:
        if plant.signal_class != "burnout_risk":
            continue
        planned = plant.magnitude["workday_after_hours_share"]
        mine = events[plant.actor_id]
        before_days = set(workdays(workload, workload.truth.start_day,
                                   plant.start_day - timedelta(days=1)))
        during_days = set(workdays(workload, plant.start_day, plant.end_day))

        def share(days: set[date], mine: list[dict] = mine) -> float:
            ts = [local(e) for e in mine if local(e).date() in days]
            return sum(after_hours(t) for t in ts) / len(ts)

        n_during = sum(1 for e in mine if local(e).date() in during_days)
        slack = binomial_slack(planned["during"], n_during)
        assert share(before_days) == pytest.approx(planned["before"], abs=0.03)
        assert share(during_days) == pytest.approx(planned["during"], abs=slack)
        assert share(during_days) - share(before_days) == pytest.approx(
            planned["during"] - planned["before"], abs=slack + 0.01)
        # ... and collaboration falls: reviews and comments given per workday
        def collab(days: set[date], mine: list[dict] = mine) -> float:
            n = sum(1 for e in mine if e["signal_type"] in ("pr_reviewed", "pr_commented")
                    and local(e).date() in days)
            return n / len(days)

        falls.append((collab(during_days) / collab(before_days),
                      plant.magnitude["collaboration_factor"]["during"]))
    # by at least half the planned fall on average (in a small team the few reviewers left
    # are asked anyway, so one plant's fall can be smaller)
    ratio, planned = (sum(x) / len(falls) for x in zip(*falls, strict=True))
    assert ratio < (1 + planned) / 2


def test_other_plants_change_what_the_truth_says(workload):
    events = by_actor(workload)
    truth = workload.truth
    drops: list[tuple[float, float, float]] = []  # (events, usual events, planned events)

    def rate(actor: str, types: tuple[str, ...], days: set[date]) -> float:
        n = sum(1 for e in events[actor] if e["signal_type"] in types
                and local(e).date() in days)
        return n / max(1, len(days))

    for p in truth.plants:
        before = set(workdays(workload, truth.start_day, p.start_day - timedelta(days=1)))
        during = set(workdays(workload, p.start_day, p.end_day))
        if p.signal_class == "rework_loop":
            for kind, planned in (("build", p.magnitude["build_failure_rate"]),
                                  ("test", p.magnitude["test_failure_rate"])):
                ok = "succeeded" if kind == "build" else "passed"
                fail = rate(p.actor_id, (f"{kind}_failed",), during)
                total = fail + rate(p.actor_id, (f"{kind}_{ok}",), during)
                n = total * len(during)  # runs in the period; 3 binomial sigmas of slack
                slack = 3 * (planned["during"] * (1 - planned["during"]) / n) ** 0.5
                assert fail / total == pytest.approx(planned["during"], abs=slack)
        elif p.signal_class == "context_thrash":
            ratio = (rate(p.actor_id, ("context_switch",), during)
                     / rate(p.actor_id, ("context_switch",), before))
            planned = p.magnitude["context_switches_per_workday"]
            factor = planned["during"] / planned["before"]
            assert 0.6 * factor < ratio < 1.5 * factor
        elif p.signal_class == "engagement_drop":
            present = present_days(events[p.actor_id])
            share = len(present & during) / len(during)
            # present on 1-2 (sometimes 3) of 5 workdays, as planned
            assert share == pytest.approx(p.magnitude["workdays_present_share"]["during"],
                                          abs=1e-3)
            assert 0.1 < share <= 0.6
            # fewer events of its own while present (reviews of others' PRs pile up on the
            # few days present, so they are left out)
            own = tuple(t for t in CANONICAL_EVENT_TYPES if t not in COLLABORATION_EVENT_TYPES)
            n_present = len(present & during)
            expected = rate(p.actor_id, own, before) * n_present
            drops.append((rate(p.actor_id, own, present & during) * n_present, expected,
                          p.magnitude["event_volume_factor"]["during"] * expected))
        elif p.signal_class == "guardrail_overrides":
            types = ("override_attempted", "policy_violation")
            planned = sum(v["during"] for v in p.magnitude.values())
            assert rate(p.actor_id, types, during) > 0.4 * planned
            assert rate(p.actor_id, types, before) < 0.5
        elif p.signal_class == "mentoring_potential":
            team = next(a.team_id for a in truth.actors if a.actor_id == p.actor_id)
            last3 = set(workdays(workload, truth.end_day - timedelta(days=20), truth.end_day))
            reviews = {m: rate(m, ("pr_reviewed",), last3) for m in truth.teams[team]}
            assert max(reviews, key=reviews.__getitem__) == p.actor_id
    # drops' own events on their present days fall by at least half the plan, all drops
    # together (one or two present days of one person can be busy ones)
    n, usual, planned = (sum(x) for x in zip(*drops, strict=True))
    assert n < (usual + planned) / 2


def test_engagement_drops_are_scattered_days_off_never_a_week_away(workload):
    truth = workload.truth
    events = by_actor(workload)
    drops = [p for p in truth.plants if p.signal_class == "engagement_drop"]
    assert drops
    for p in drops:
        present = present_days(events[p.actor_id])
        # the plant and a week either side: no run of 5 workdays away (at most 3)
        around = workdays(workload, p.start_day - timedelta(days=7),
                          p.end_day + timedelta(days=7))
        run = longest = 0
        for d in around:
            run = 0 if d in present else run + 1
            longest = max(longest, run)
        assert longest <= 3, p
        during = workdays(workload, p.start_day, p.end_day)
        assert any(d not in present for d in during)


def test_plant_strengths_vary_and_scale_the_magnitudes(workload):
    strengths = [p.strength for p in workload.truth.plants]
    assert all(0.7 <= s <= 1.3 for s in strengths)
    assert len(set(strengths)) > len(strengths) // 2
    for p in workload.truth.plants:
        if p.signal_class == "guardrail_overrides":
            planned = p.magnitude["override_attempts_per_day"]
            assert planned["during"] == pytest.approx(0.05 + 2.45 * p.strength, abs=1e-3)
        elif p.signal_class == "rework_loop":
            planned = p.magnitude["builds_and_tests_factor"]
            assert planned["during"] == pytest.approx(1 + 0.5 * p.strength, abs=1e-3)
    # the strength is part of the truth's JSON
    assert all("strength" in p for p in workload.truth.as_dict()["plants"])


def test_offices_span_utc_minus_8_to_utc_plus_8(workload):
    offsets = {utc_offset(a.utc_offset) for a in workload.truth.actors}
    assert min(offsets) <= timedelta(hours=-8) and max(offsets) >= timedelta(hours=8)


def test_most_agents_work_around_the_clock_in_bursts(workload):
    truth = workload.truth
    events = by_actor(workload)
    agents = [a for a in truth.actors if a.actor_type == "ai_agent"]
    round_the_clock = noise_actors(workload, "round_the_clock")
    assert len(round_the_clock) >= len(agents) - 1 and len(round_the_clock) >= 3
    for actor in round_the_clock:
        times = [local(e) for e in events[actor]]
        assert {t.hour for t in times} == set(range(24))  # every hour of the day, 22-06 too
        assert {t.weekday() for t in times} == set(range(7))
        for monday in full_weeks(workload):
            week = [t for t in times if monday <= t.date() < monday + timedelta(days=7)]
            assert sum(after_hours(t) for t in week) / len(week) > 0.4, (actor, monday)
            # weekends about as busy as weekdays (per day)
            weekend = sum(t.weekday() >= 5 for t in week)
            assert weekend / 2 > 0.4 * (len(week) - weekend) / 5
        # bursts: on a typical day some hours are busy and others idle
        by_day: dict[date, Counter] = defaultdict(Counter)
        for t in times:
            by_day[t.date()][t.hour] += 1
        idle = sorted(24 - len(hours) for hours in by_day.values())
        assert 4 <= idle[len(idle) // 2] <= 18
    # the team-hours agent (if any) keeps to its team's rhythm
    for a in agents:
        if a.actor_id not in round_the_clock:
            times = [local(e) for e in events[a.actor_id]]
            assert sum(after_hours(t) for t in times) / len(times) < 0.3


def test_evening_workers_always_work_evenings_and_have_nothing_planted(workload):
    truth = workload.truth
    events = by_actor(workload)
    evening = noise_actors(workload, "evening_worker")
    assert 2 <= len(evening) <= 4
    kind = {a.actor_id: a.actor_type for a in truth.actors}
    planted = {p.actor_id for p in truth.plants}
    for actor in evening:
        assert kind[actor] == "human" and actor not in planted
        times = [local(e) for e in events[actor]]
        for monday in full_weeks(workload):
            week = [t for t in times if monday <= t.date() < monday + timedelta(days=7)]
            share = sum(after_hours(t) for t in week) / len(week)
            assert 0.35 <= share <= 0.6, (actor, monday, share)


def test_noise_is_what_the_truth_says(workload):
    events = by_actor(workload)
    truth = workload.truth
    kinds = Counter(n.kind for n in truth.noise)
    assert kinds["leave"] >= 3 and kinds["ramp_up"] == 1 and kinds["sick_day"] >= 5
    assert 2 <= kinds["evening_worker"] <= 4 and kinds["round_the_clock"] >= 3
    # nothing planted on the people on leave, the new joiner or the evening workers
    planted = {p.actor_id for p in truth.plants}
    assert not planted & {n.actor_id for n in truth.noise
                          if n.kind in ("leave", "busy_week", "ramp_up", "evening_worker")}
    for n in truth.noise:
        days = {local(e).date() for e in events[n.actor_id]}
        if n.kind == "leave":
            span = [n.start_day + timedelta(days=i)
                    for i in range((n.end_day - n.start_day).days + 1)]
            assert sum(d.weekday() < 5 for d in span) >= 5  # a whole week, holidays included
            assert not (days & set(workdays(workload, n.start_day, n.end_day)))
        elif n.kind == "ramp_up":
            first = next(a.first_day for a in truth.actors if a.actor_id == n.actor_id)
            assert first == n.start_day and min(days) >= first - timedelta(days=1)
        elif n.kind == "sick_day":
            # nothing that day but the tail of the night before (work after midnight)
            assert not [e for e in events[n.actor_id]
                        if local(e).date() == n.start_day and local(e).hour >= 3]


def test_write_and_read_back(tmp_path, workload):
    small = generate(5, **SMALL)
    path = write_jsonl(small, tmp_path / "org.jsonl.gz")
    truth_file = write_truth(small.truth, truth_path_for(path))
    assert truth_file.name == "org.truth.json"
    import gzip

    with gzip.open(path, "rt") as fh:
        lines = [json.loads(line) for line in fh]
    assert lines == small.envelopes
    assert read_truth(truth_file).as_dict() == small.truth.as_dict()
    assert read_truth(truth_file) == small.truth
