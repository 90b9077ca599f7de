"""The demo's printout and HTML report, on hand-made signals (no database, no pipeline)."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta
from typing import Any

from ubi.demo import report
from ubi.demo.html import MAX_POINTS, render_report
from ubi.demo.runner import DemoResult, IngestSummary

DAY = date(2026, 3, 4)


def _signal(n: int, cls: str, subject: str, *, scope: str = "actor", day: date = DAY,
            severity: str = "WARN", kind: str = "risk", team: str | None = None,
            reason: str = "context_switch_rate 7d rose to 2/h") -> dict[str, Any]:
    return {"signal_id": f"sig-{n:04d}", "actor_scope": scope, "subject_id": subject,
            "signal_class": cls, "severity": severity, "first_day": day, "status": "active",
            "reason": reason, "team_id": team, "dimension": "flow", "signal_type": kind}


def _result(signals: list[dict[str, Any]], *, first: date = DAY - timedelta(days=30),
            last: date = DAY + timedelta(days=10)) -> DemoResult:
    actor_of = {f"pseudo-{i}": f"dev-{i:03d}" for i in range(50)}
    return DemoResult("acme", IngestSummary(events=1234), signals, actor_of, first, last, 1.0)


def _printed(result: DemoResult, **kw: Any) -> list[str]:
    lines: list[str] = []
    report.print_signals(lines.append, result, **kw)
    return lines


def test_signals_of_the_same_day_print_in_the_same_order_whatever_the_storage_order() -> None:
    # Signal ids run against the actors' names, so neither storage order nor ids decide.
    signals = [_signal(100 - i, "context_thrash", f"pseudo-{i}") for i in range(6)]
    outputs = set()
    for seed in range(5):
        shuffled = list(signals)
        random.Random(seed).shuffle(shuffled)
        outputs.add(tuple(_printed(_result(shuffled), per_class=6)))
    assert len(outputs) == 1
    listed = [ln.split()[1] for ln in outputs.pop() if ln.startswith("    - ")]
    assert listed == [f"dev-{i:03d}" for i in range(6)]


def test_group_list_says_how_many_more_and_informational_signals_are_counted() -> None:
    groups = [_signal(i, "burnout_risk", f"team-{i}", scope="team", day=DAY + timedelta(days=i))
              for i in range(8)]
    informational = [_signal(20 + i, "after_hours_activity", f"pseudo-{i}", kind="informational",
                             severity="INFO") for i in range(5)]
    informational += [_signal(40 + i, "after_hours_activity", "acme", scope="tenant",
                              kind="informational", severity="INFO") for i in range(2)]
    lines = _printed(_result(groups + informational), groups_shown=6)
    assert lines[1] == "Signals found: 5 on actors, 10 on teams / cohorts / the tenant."
    assert "baseline M ± S" in lines[2] and "z: how many S" in lines[2]
    team_lines = [ln for ln in lines if ln.startswith("  team ")]
    assert [ln.split(":")[0] for ln in team_lines] == [f"  team team-{i}" for i in range(6)]
    assert "  ... and 2 more on teams / cohorts / the tenant" in lines
    assert not any("after_hours_activity" in ln for ln in lines[:-1])
    assert lines[-1] == ("  informational (counted, not listed): actor after_hours_activity 5, "
                         "tenant after_hours_activity 2")


def _card(recall: float, noisy: int = 1, warmup: int = 0, precision: float = 1.0,
          days: tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    return {"classes": {"burnout_risk": {"planted": 3, "detected": 3, "precision": 1.0,
                                         "recall": 1.0, "signals": 3,
                                         "days_to_detect": list(days)},
                        "rework_loop": {"planted": 5, "detected": 4, "precision": precision,
                                        "recall": recall, "signals": 4,
                                        "days_to_detect": [2, 2, 3, 3]},
                        # an opportunity class: precision reported, no target, and its days
                        # to detect (weeks by design) are not in the median
                        "mentoring_potential": {"planted": 2, "detected": 2, "precision": 0.4,
                                                "recall": 1.0, "signals": 5,
                                                "days_to_detect": [20, 25]}},
            "clean_actor_weeks": 100, "signals_on_clean_actor_weeks": noisy,
            "warmup_signals": warmup}


def test_targets_say_what_each_one_is_and_whether_it_was_met() -> None:
    met = report.generated_targets(_card(recall=1.0))
    assert all(t["met"] for t in met.values())
    assert met["signals_per_clean_actor_week"] == {"at_most": 0.05, "value": 0.01, "met": True}
    missed = report.generated_targets(_card(recall=0.8, noisy=6, warmup=1))
    recall = missed["recall_of_each_planted_class"]
    assert recall["at_least"] == 0.9 and not recall["met"]
    assert recall["classes"] == {"burnout_risk": {"value": 1.0, "met": True},
                                 "mentoring_potential": {"value": 1.0, "met": True},
                                 "rework_loop": {"value": 0.8, "met": False}}
    assert met["precision_of_each_risk_class"]["classes"] == {
        "burnout_risk": {"value": 1.0, "met": True}, "rework_loop": {"value": 1.0, "met": True}}
    assert met["median_days_to_detect"] == {"at_most": 3.0, "value": 2.0, "met": True}
    slow = report.generated_targets(_card(recall=1.0, precision=0.7, days=(5, 6, 7)))
    assert not slow["precision_of_each_risk_class"]["met"]
    assert slow["median_days_to_detect"] == {"at_most": 3.0, "value": 3.0, "met": True}
    slower = report.generated_targets(_card(recall=1.0, days=(5, 6, 7, 8, 9)))
    assert slower["median_days_to_detect"] == {"at_most": 3.0, "value": 5.0, "met": False}
    assert not missed["signals_per_clean_actor_week"]["met"]
    assert missed["warmup_signals"] == {"at_most": 0, "value": 1, "met": False}
    lines: list[str] = []
    assert report.print_scorecard(lines.append, _card(recall=0.8)) is False
    assert any(ln.startswith("  rework_loop") and ln.endswith("< 0.9 recall") for ln in lines)
    lines = []
    assert report.print_scorecard(lines.append, _card(recall=1.0, precision=0.7)) is False
    assert any(ln.startswith("  rework_loop") and ln.endswith("< 0.8 precision")
               for ln in lines)
    assert lines[-1] == "  quality targets: NOT met"
    real = report.real_targets({"warn_or_higher_per_active_actor_month": 0.3})
    assert real == {"warn_or_higher_per_active_actor_month": {
        "at_most": 0.25, "value": 0.3, "met": False}}


def test_scorecard_prints_days_to_detect_and_the_clean_rate_per_actor_type() -> None:
    card = _card(recall=1.0, noisy=12)
    card["classes"]["burnout_risk"]["median_days_to_detect"] = 3.5
    card["clean_actor_weeks"] = 300
    card["by_actor_type"] = {
        "human": {"clean_actor_weeks": 270, "signals_on_clean_actor_weeks": 3,
                  "signals_per_clean_actor_week": 0.0111,
                  "noise_by_class": {"burnout_risk": 1, "after_hours_activity": 2}},
        "ai_agent": {"clean_actor_weeks": 30, "signals_on_clean_actor_weeks": 9,
                     "signals_per_clean_actor_week": 0.3, "noise_by_class": {"rework_loop": 9}}}
    lines: list[str] = []
    assert report.print_scorecard(lines.append, card) is True
    assert lines[2].split() == ["class", "planted", "detected", "precision", "recall", "days",
                                "to", "detect"]
    assert lines[3].split() == ["burnout_risk", "3", "3", "1.00", "1.00", "3.5"]
    assert lines[5].split()[0] == "rework_loop"
    assert lines[5].split()[-1] == "-"  # no median days to detect in this card
    assert ("  median days to detect, risk classes: 2.0 (target <= 3) ok; precision of each "
            "risk class target >= 0.8") in lines
    assert "    ai_agent:    9 over   30 = 0.300 (rework_loop 9)" in lines
    assert "    human:       3 over  270 = 0.011 (after_hours_activity 2, burnout_risk 1)" in lines


def test_a_history_of_years_without_teams_gets_a_tenant_timeline_with_its_signals() -> None:
    first, last = date(2019, 1, 1), date(2023, 12, 31)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    scores = {("tenant", "acme"): {dim: {d: 40.0 + (i % 20) for i, d in enumerate(days)}
                                   for dim in ("activity", "flow")}}
    signals = [_signal(1, "burnout_risk", "pseudo-1", day=date(2020, 5, 6)),
               _signal(2, "burnout_risk", "acme", scope="tenant", day=date(2021, 2, 3)),
               _signal(3, "after_hours_activity", "human", scope="cohort",
                       day=date(2022, 7, 8), kind="informational", severity="INFO")]
    page = render_report(_result(signals, first=first, last=last), scores)
    assert "<h2>Team " not in page
    assert page.count("<section>") == 1 and page.count("<svg") == 1
    points = re.findall(r'points="([^"]*)"><title>(\w+)</title>', page)
    assert {dim for _, dim in points} == {"activity", "flow"}
    assert all(1 < len(p.split()) <= MAX_POINTS for p, _ in points)
    ticks = re.findall(r'text-anchor="middle">([^<]*)</text>', page)
    assert ticks == ["Jan 2019", "Jul 2019", "Jan 2020", "Jul 2020", "Jan 2021", "Jul 2021",
                     "Jan 2022", "Jul 2022", "Jan 2023", "Jul 2023"]  # half-years: <= 12
    items = re.findall(r"<li>([^<]*)</li>", page)
    assert items == [
        "2020-05-06 dev-001: burnout_risk [WARN] context_switch_rate 7d rose to 2/h",
        "2021-02-03 tenant: burnout_risk [WARN] context_switch_rate 7d rose to 2/h",
        "2022-07-08 cohort human: after_hours_activity [INFO] context_switch_rate 7d rose to 2/h"]
    assert page.count("<circle") == 3


def test_teams_keep_their_own_sections_with_their_members_signals() -> None:
    days = [DAY - timedelta(days=i) for i in range(20)]
    scores = {("team", "search"): {"flow": {d: 50.0 for d in days}}}
    signals = [_signal(1, "context_thrash", "pseudo-3", team="search"),
               _signal(2, "burnout_risk", "tiny", scope="team")]
    page = render_report(_result(signals), scores)
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    assert titles == ["Team search", "Team tiny"]
    assert "dev-003: context_thrash" in page.split("<h2>Team tiny")[0]
    assert "No team scores" in page.split("<h2>Team tiny")[1]
    ticks = re.findall(r'text-anchor="middle">([^<]*)</text>', page)
    assert ticks and all(re.fullmatch(r"\d\d [A-Z][a-z]{2}", t) for t in ticks)  # Mondays
