"""The demo's printed report: what was ingested, the signals found, the scorecard."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ubi.demo.runner import DemoResult
from ubi.settings import Settings

Echo = Callable[[str], Any]
RECALL_TARGET = 0.9
CLEAN_RATE_TARGET = 1 / 20
REAL_RATE_TARGET = 0.25


def describe_setup(settings: Settings) -> str:
    store = settings.database_url.split("///")[-1] if settings.database_url.startswith(
        "sqlite") else settings.database_url.split("@")[-1]
    broker = "in-process broker, tasks run here" if settings.embedded_broker else \
        f"RabbitMQ {settings.broker_url.split('@')[-1]} (workers must be running)"
    kind = "SQLite" if settings.database_url.startswith("sqlite") else "PostgreSQL"
    return f"store: {kind} {store}; {broker}"


def print_ingest(echo: Echo, result: DemoResult, teams: int | None = None) -> None:
    i = result.ingest
    echo(f"Ingested {i.events:,} events in {i.batches} batches over HTTP "
         f"(accepted {i.accepted:,}, duplicates {i.duplicates:,}, rejected {i.rejected:,}) "
         f"in {i.seconds:.0f} s; whole run {result.seconds:.0f} s.")
    team_part = f", {teams} teams" if teams else ""
    echo(f"  {len(result.actor_of)} actors{team_part}, {result.first_day} .. {result.last_day} "
         f"(tenant {result.tenant_id})")
    for error in i.errors[:5]:
        echo(f"  ! {error}")
    check = result.extra.get("features_check")
    if check is not None:
        echo("Stored features against a from-scratch computation from the stored events: "
             + ("features consistent" if check["consistent"] else "they differ") + ".")
        if not check["consistent"]:
            echo("  " + result.extra["features_check_summary"].replace("\n", "\n  "))


def _episodes(result: DemoResult) -> list[dict[str, Any]]:
    """One line per signal (its highest severity), newest information first."""
    best: dict[str, dict[str, Any]] = {}
    rank = {"INFO": 0, "WARN": 1, "CRITICAL": 2}
    for r in result.signals:
        cur = best.get(r["signal_id"])
        if cur is None or rank[r["severity"]] > rank[cur["severity"]]:
            best[r["signal_id"]] = dict(r)
    return sorted(best.values(), key=lambda r: (r["signal_class"], r["first_day"]))


def print_signals(echo: Echo, result: DemoResult, *, per_class: int = 4) -> None:
    episodes = _episodes(result)
    actor = [e for e in episodes if e["actor_scope"] == "actor"]
    groups = [e for e in episodes if e["actor_scope"] != "actor"]
    echo("")
    echo(f"Signals found: {len(actor)} on actors, {len(groups)} on teams / cohorts / the tenant.")
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in actor:
        by_class[e["signal_class"]].append(e)
    for cls in sorted(by_class):
        items = by_class[cls]
        echo(f"  {cls} ({len(items)}, {items[0]['signal_type']})")
        for e in items[:per_class]:
            who = result.actor_of.get(e["subject_id"], e["subject_id"][:12])
            echo(f"    - {who} [{e['severity']}] from {e['first_day']}: {e['reason']}")
        if len(items) > per_class:
            echo(f"    ... and {len(items) - per_class} more")
    for e in groups[:6]:
        echo(f"  {e['actor_scope']} {e['subject_id'][:24]}: {e['signal_class']} "
             f"[{e['severity']}] from {e['first_day']}: {e['reason']}")


def print_scorecard(echo: Echo, card: dict[str, Any]) -> bool:
    """Print the scorecard; True when every quality target holds."""
    echo("")
    echo("Scorecard against the planted truth:")
    echo(f"  {'class':<26}{'planted':>8}{'detected':>10}{'precision':>11}{'recall':>8}")
    ok = True
    for cls, s in sorted(card["classes"].items()):
        if not s["planted"] and not s.get("signals"):
            continue
        p = "-" if s["precision"] is None else f"{s['precision']:.2f}"
        r = "-" if s["recall"] is None else f"{s['recall']:.2f}"
        miss = s["planted"] and (s["recall"] or 0) < RECALL_TARGET
        ok &= not miss
        echo(f"  {cls:<26}{s['planted']:>8}{s['detected']:>10}{p:>11}{r:>8}"
             f"{'   < 0.9 recall' if miss else ''}")
    weeks, noisy = card["clean_actor_weeks"], card["signals_on_clean_actor_weeks"]
    rate = noisy / weeks if weeks else 0.0
    clean_ok = rate <= CLEAN_RATE_TARGET
    echo(f"  signals on actors with nothing planted: {noisy} over {weeks} actor-weeks "
         f"= {rate:.3f} per actor-week (target <= {CLEAN_RATE_TARGET:.2f}) "
         f"{'ok' if clean_ok else 'TOO MANY'}")
    echo(f"  signals during an actor's warm-up: {card['warmup_signals']} (target 0)")
    ok &= clean_ok and card["warmup_signals"] == 0
    echo(f"  quality targets: {'met' if ok else 'NOT met'}")
    return ok


def print_real(echo: Echo, report: dict[str, Any]) -> bool:
    echo("")
    echo(f"Real history: {report['events']:,} events, {report['actors']:,} actors, "
         f"{report['active_actor_months']:,} active actor-months "
         "(>= 4 days with events in a calendar month).")
    for cls, n in sorted(report["signals_by_class"].items()):
        echo(f"  {cls:<26}{n:>6}")
    rate = report["warn_or_higher_per_active_actor_month"]
    ok = rate <= REAL_RATE_TARGET
    echo(f"  WARN or higher per active actor-month: {rate:.3f} (target <= {REAL_RATE_TARGET}) "
         f"{'ok' if ok else 'TOO MANY'}")
    return ok
