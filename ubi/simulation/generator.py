"""A realistic engineering organisation as SignalEnvelopes, with planted truth (issue 6).

``generate(seed, ...)`` builds a tenant of about 60 actors over ``weeks`` weeks ending on
``end_day`` and returns a ``Workload``: the envelopes (JSON-able dicts in the SPEC §3 shape) and
a ``GroundTruth`` that says who was planted with which behaviour change, when, and by how much.
Deterministic for a seed: all randomness comes from one ``numpy.random.Generator`` tree
(``SeedSequence(seed)``, one child stream per actor and one per concern), and no clock is read.

The organisation
----------------
- ``teams`` teams of 3-12 actors, always one below ``min_team_size`` (5) and several above;
  each team works from an office with its own UTC offset (seven offices from -08:00 to
  +09:00: ``OFFICES``), a few members work remotely from another offset. ``occurred_at``
  carries the actor's own offset.
- A few AI agents (``resource.actor_type = "ai_agent"``) work for teams. Most run around the
  clock: every day alike (weekends and holidays too), at any hour of their team's local time,
  in 4-9 bursts of 1-4 hours a day with idle hours between, so about 70 % of their events are
  outside Monday-Friday 09:00-18:00, every week. With four or more agents the last one runs
  on its team's hours instead: whenever the team works, some nightly, lightly on weekends.
- Weekly rhythm: humans work Monday-Friday in their local time (09:00-18:00 with a personal
  after-hours habit of 3-10 % of events, a little late-night work), rarely on weekends. One
  organisation-wide public holiday and one regional holiday (one office only).
- Rates per human workday (Poisson around personal habits, times a day-to-day busyness factor):
  about 4 commits (2-3 pushes), 6 file edits, 4 builds and 5 test runs with personal failure
  rates (8-15 % / 5-10 %), half a PR created, reviews and comments on teammates' PRs (about
  12 % of reviewers from another team), LLM requests on the work items in progress (2-4 per
  item and day; an item lasts a few days), 5 context switches, 2-3 focus sessions of 50-100
  minutes (a few in the evening, as the after-hours habit says), CI gate evaluations, and very
  rare policy violations / overrides. Every canonical event type occurs.
- Two to four evening workers: people whose habit is 44-52 % of workday events after hours
  (mostly 18:00-22:00), all along, so every week's after-hours share is 0.35-0.6.
- Collaboration is simulated per PR: the author's ``pr_created`` names the requested reviewer,
  reviewers' ``pr_reviewed`` / ``pr_commented`` name the author, the author's replies and
  ``pr_merged`` / ``pr_closed`` name the reviewer (``payload.counterpart_actor_id``). LLM
  requests and commits carry ``payload.work_item_id``; ``focus_session_ended`` carries
  ``payload.duration_ms``.

Planted behaviour changes (``GroundTruth.plants``)
--------------------------------------------------
Each planted on ``instances`` (default 3) distinct actors, starting after a warm-up of at least
three weeks, with the planned magnitudes recorded. Each plant has a ``strength`` drawn
uniformly in [0.7, 1.3]: every change from the actor's habit is that share of the nominal
change below (burnout at strength 0.7 moves the after-hours share 70 % of the way to ~45 %), and
the recorded magnitudes are the scaled ones.

- ``burnout_risk``: after-hours drift (workday after-hours share to ~45 %, more late-night
  work, weekend work) and falling collaboration (reviews and comments to ~30 %);
- ``rework_loop``: build and test failure rates to ~45 %, 50 % more builds and test runs;
- ``context_thrash``: context switches x4, fewer PRs, focus sessions a little shorter;
- ``engagement_drop``: for 7-14 days, present on about 1-2 (sometimes 3) of 5 workdays, with
  runs of 1-3 workdays away between present days (never 4 in a row, the actor's holidays
  included, and no sick day in the week around: a week away is leave), 40 % fewer events
  (focus sessions too) while present, focus sessions halved;
- ``guardrail_overrides`` (AI agents): override attempts and policy violations x20 or more;
- ``mentoring_potential``: chosen to review teammates' PRs with three times the weight of the
  team's top reviewer (one mentor per team; 2.1-3.9 times with the strength), rising to the
  top of the team for the rest of the range (from week 3 on).

Noise that must not fire (``GroundTruth.noise``): a week of leave for several actors (one of
them right after an unusually busy week), a new joiner ramping up from 30 % to full activity
over three weeks, single sick days, holidays, the evening workers, the round-the-clock agents,
and ordinary day-to-day variance. The people on leave, the new joiner and the evening workers
have nothing planted; a round-the-clock agent may carry a guardrail plant.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

#: Default last day of a generated range (a Sunday): a parameter, never the wall clock.
DEFAULT_END_DAY = date(2025, 3, 30)
DEFAULT_TENANT = "sim-org"
SCHEMA_VERSION = "1.0"
_ID_NAMESPACE = uuid.UUID("6f0b7c1e-4d0e-5b8a-9a51-2c8f3d7e9b10")

#: Offices: (name, UTC offset in minutes). Fixed offsets: the range is short and a producer
#: stamps the offset it had at the time anyway.
OFFICES: tuple[tuple[str, int], ...] = (
    ("berlin", 60), ("new-york", -300), ("bangalore", 330), ("london", 0),
    ("sao-paulo", -180), ("tokyo", 540), ("san-francisco", -480),
)
TEAM_NAMES: tuple[str, ...] = (
    "payments", "platform", "search", "mobile", "data", "infra", "growth", "billing",
    "identity", "observability", "checkout", "ml")

PLANT_CLASSES: tuple[str, ...] = (
    "burnout_risk", "rework_loop", "context_thrash", "engagement_drop",
    "guardrail_overrides", "mentoring_potential")
#: Plant durations in days (mentoring runs to the end of the range); an engagement drop lasts
#: ``DROP_DAYS`` days (inclusive range; its entry here is the longest).
PLANT_DAYS: dict[str, int] = {
    "burnout_risk": 21, "rework_loop": 14, "context_thrash": 14, "engagement_drop": 14,
    "guardrail_overrides": 14, "mentoring_potential": 10_000}
DROP_DAYS = (7, 14)
#: Each plant has this share of its class's nominal effect, drawn uniformly.
STRENGTH_RANGE = (0.7, 1.3)
#: Evening workers per tenant (inclusive range) and their usual workday after-hours share.
EVENING_WORKERS = (2, 4)
EVENING_SHARE = (0.44, 0.52)
WARMUP_DAYS = 21
MENTOR_START_DAYS = 14

WORK_START_H, WORK_END_H = 9.0, 18.0


# --- truth -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActorTruth:
    """One generated actor. ``first_day``: the day it joined (or the range's first day)."""

    actor_id: str
    actor_type: str
    team_id: str
    utc_offset: str
    first_day: date


@dataclass(frozen=True)
class Plant:
    """A planted behaviour change: ``signal_class`` on ``actor_id`` over [start_day, end_day].

    ``magnitude``: planned values, ``{quantity: {"before": x, "during": y}}`` (rates per day,
    shares in 0..1, factors relative to the actor's habit), already scaled by ``strength``:
    the share of the class's nominal effect this plant has (drawn in [0.7, 1.3]).
    """

    actor_id: str
    signal_class: str
    start_day: date
    end_day: date
    magnitude: Mapping[str, Mapping[str, float]]
    description: str
    strength: float = 1.0


@dataclass(frozen=True)
class Noise:
    """Something realistic that must not raise a signal: ``kind`` is ``leave``,
    ``busy_week`` (before a leave), ``ramp_up``, ``sick_day``, ``regional_holiday``,
    ``evening_worker`` (someone whose usual after-hours share is high, all along) or
    ``round_the_clock`` (an AI agent working at every hour of every day)."""

    actor_id: str
    kind: str
    start_day: date
    end_day: date
    description: str = ""


@dataclass
class GroundTruth:
    """What was generated, as the scorecard and the tests read it (``as_dict`` is the JSON)."""

    tenant_id: str
    seed: int
    start_day: date
    end_day: date
    actors: list[ActorTruth]
    teams: dict[str, list[str]]
    plants: list[Plant]
    noise: list[Noise]
    #: Organisation-wide public holidays (local dates, every office).
    holidays: list[date]
    #: Regional holidays: office name -> local dates.
    regional_holidays: dict[str, list[date]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def conv(v: Any) -> Any:
            if isinstance(v, date):
                return v.isoformat()
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [conv(x) for x in v]
            return v
        return conv(asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroundTruth:
        day = date.fromisoformat
        return cls(
            tenant_id=d["tenant_id"], seed=int(d["seed"]), start_day=day(d["start_day"]),
            end_day=day(d["end_day"]),
            actors=[ActorTruth(a["actor_id"], a["actor_type"], a["team_id"], a["utc_offset"],
                               day(a["first_day"])) for a in d["actors"]],
            teams={k: list(v) for k, v in d["teams"].items()},
            plants=[Plant(p["actor_id"], p["signal_class"], day(p["start_day"]),
                          day(p["end_day"]), p["magnitude"], p["description"],
                          float(p.get("strength", 1.0)))
                    for p in d["plants"]],
            noise=[Noise(n["actor_id"], n["kind"], day(n["start_day"]), day(n["end_day"]),
                         n.get("description", "")) for n in d["noise"]],
            holidays=[day(h) for h in d["holidays"]],
            regional_holidays={k: [day(x) for x in v]
                               for k, v in d.get("regional_holidays", {}).items()})

    def plants_of(self, actor_id: str) -> list[Plant]:
        return [p for p in self.plants if p.actor_id == actor_id]


@dataclass
class Workload:
    """Envelopes (time-ordered JSON-able dicts, SPEC §3) and their ground truth."""

    envelopes: list[dict[str, Any]]
    truth: GroundTruth

    @property
    def tenant_id(self) -> str:
        return self.truth.tenant_id


def write_jsonl(workload: Workload, path: str | Path) -> Path:
    """Write the envelopes one JSON object per line (gzip when the name ends in ``.gz``)."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "wt", encoding="utf-8") as fh:
        for env in workload.envelopes:
            fh.write(json.dumps(env, separators=(",", ":")))
            fh.write("\n")
    return p


def write_truth(truth: GroundTruth, path: str | Path) -> Path:
    """Write the ground truth as indented JSON."""
    p = Path(path)
    p.write_text(json.dumps(truth.as_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return p


def read_truth(path: str | Path) -> GroundTruth:
    """Read a ground truth written by ``write_truth``."""
    return GroundTruth.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def truth_path_for(jsonl_path: str | Path) -> Path:
    """Where the ground truth of an envelope file lives: ``<name>.truth.json`` beside it."""
    p = Path(jsonl_path)
    name = p.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return p.with_name(name + ".truth.json")


# --- actors and their habits ------------------------------------------------------------------

_GOLDEN = 0.6180339887498949  # the golden ratio's fractional part: a low-discrepancy step


@dataclass
class _Actor:
    actor_id: str
    actor_type: str
    team_id: str
    office: str
    offset_min: int
    first_day: int  # day index
    rng: np.random.Generator
    activity: float = 1.0
    after_hours: float = 0.06  # share of workday events outside 09:00-18:00 local
    late_share: float = 0.15  # share of after-hours events between 22:00 and 06:00
    weekend_prob: float = 0.05
    build_fail: float = 0.12
    test_fail: float = 0.08
    review_weight: float = 1.0
    llm_per_item: float = 3.0
    focus_min: float = 75.0
    switches: float = 5.0
    pr_rate: float = 0.5
    #: An agent that runs around the clock, every day, in bursts (else: its team's hours).
    round_the_clock: bool = False
    #: Evening workers: the state of a golden-ratio sequence that replaces the random draw
    #: deciding whether an event is after hours, so every week's share stays near the habit
    #: (with independent draws, some week of some seed falls 0.14 below it). None: random.
    steady: float | None = None
    # Day-level state filled in by the plan.
    #: Round-the-clock agents: day -> cumulative weights of the 24 local hours (bursts).
    hours: dict[int, np.ndarray] = field(default_factory=dict)
    present: dict[int, float] = field(default_factory=dict)  # day -> intensity
    mods: dict[int, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def after_hours_draw(self, rng: np.random.Generator) -> float:
        """A number in [0, 1): the event is after hours when it is below the share."""
        u = float(rng.random())  # drawn either way: the actor's stream stays the same
        if self.steady is None:
            return u
        self.steady = (self.steady + _GOLDEN) % 1.0
        return self.steady


def _offset_str(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    m = abs(minutes)
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


def _team_sizes(n_humans: int, n_teams: int, rng: np.random.Generator) -> list[int]:
    """Team sizes (humans only) in 3..12: the first team is small (3), the rest share the
    remaining humans as evenly as randomness allows, each in 5..11 (agents join later)."""
    if n_teams < 2:
        raise ValueError("need at least two teams (one below min_team_size, one above)")
    rest = n_humans - 3
    if rest < 5 * (n_teams - 1) or rest > 11 * (n_teams - 1):
        raise ValueError(f"{n_humans} humans do not fit {n_teams} teams of 3-12 actors")
    sizes = [5] * (n_teams - 1)
    for _ in range(rest - 5 * (n_teams - 1)):
        open_ = [i for i, s in enumerate(sizes) if s < 11]
        sizes[int(rng.choice(open_))] += 1
    return [3, *sizes]


def _weekday(start: date, d: int) -> int:
    return (start + timedelta(days=d)).weekday()


def _burst_hours(rng: np.random.Generator) -> np.ndarray:
    """Cumulative weights of the 24 local hours of a round-the-clock agent's day: 4-9 bursts
    of 1-4 hours starting at any hour (wrapping past midnight), idle hours in between."""
    weights = np.zeros(24)
    for _ in range(int(rng.integers(4, 10))):
        first, length = int(rng.integers(24)), int(rng.integers(1, 5))
        intensity = float(rng.gamma(2.0, 0.5))
        for h in range(first, first + length):
            weights[h % 24] += intensity
    return np.cumsum(weights)


# --- the generator -----------------------------------------------------------------------------

def generate(seed: int, *, actors: int = 60, teams: int = 7, agents: int = 6, weeks: int = 8,
             end_day: date = DEFAULT_END_DAY, tenant_id: str = DEFAULT_TENANT,
             instances: int = 3) -> Workload:
    """A deterministic workload (see the module docstring).

    ``actors``: humans + agents; ``teams``: number of teams; ``agents``: AI agents among the
    actors (at least ``instances`` for the guardrail plants); ``weeks``: length of the range
    ending on ``end_day`` (inclusive; at least 6 so plants start after a 3-week warm-up and
    last); ``instances``: planted actors per class.
    """
    if weeks < 6:
        raise ValueError("weeks must be at least 6 (3 weeks of warm-up, then the plants)")
    if agents < instances:
        raise ValueError("need at least `instances` agents for the guardrail plants")
    root = np.random.SeedSequence(seed)
    org_seq, plan_seq, pr_seq, actor_seq = root.spawn(4)
    org = np.random.default_rng(org_seq)
    n_days = 7 * weeks
    start = end_day - timedelta(days=n_days - 1)
    n_humans = actors - agents

    # --- organisation
    sizes = _team_sizes(n_humans, teams, org)
    team_names = list(TEAM_NAMES[:teams]) if teams <= len(TEAM_NAMES) else [
        f"team-{i + 1:02d}" for i in range(teams)]
    office_of_team = {t: OFFICES[i % len(OFFICES)] for i, t in enumerate(team_names)}
    actor_rngs = [np.random.default_rng(s) for s in actor_seq.spawn(actors)]
    people: list[_Actor] = []
    k = 0
    for team, size in zip(team_names, sizes, strict=True):
        for _ in range(size):
            rng = actor_rngs[k]
            k += 1
            office, offset = office_of_team[team]
            if rng.random() < 0.12:  # a remote member in another office
                office, offset = OFFICES[int(rng.integers(len(OFFICES)))]
            a = _Actor(f"dev-{k:03d}", "human", team, office, offset, 0, rng)
            a.activity = float(np.exp(rng.normal(0.0, 0.25)))
            a.after_hours = float(rng.uniform(0.03, 0.10))
            a.late_share = float(rng.uniform(0.05, 0.2))
            a.weekend_prob = float(rng.choice([0.02, 0.05, 0.08, 0.15], p=[.3, .35, .25, .1]))
            a.build_fail = float(rng.uniform(0.08, 0.15))
            a.test_fail = float(rng.uniform(0.05, 0.10))
            a.review_weight = float(np.exp(rng.normal(0.0, 0.45)))
            a.llm_per_item = float(rng.uniform(2.0, 4.0))
            a.focus_min = float(rng.uniform(50.0, 100.0))
            a.switches = float(rng.uniform(3.5, 6.5))
            a.pr_rate = float(rng.uniform(0.35, 0.65))
            people.append(a)
    # Agents join teams of at least 5 humans, round robin from the largest.
    big = sorted((t for t, s in zip(team_names, sizes, strict=True) if s >= 5),
                 key=lambda t: -sizes[team_names.index(t)])
    for i in range(agents):
        rng = actor_rngs[k]
        k += 1
        team = big[i % len(big)]
        office, offset = office_of_team[team]
        a = _Actor(f"agent-{i + 1:02d}", "ai_agent", team, office, offset, 0, rng)
        # Agents run around the clock; with four or more, the last one runs on its team's
        # hours instead (an assistant started by people, not a pipeline).
        a.round_the_clock = not (agents >= 4 and i == agents - 1)
        a.activity = float(np.exp(rng.normal(0.0, 0.2)))
        a.after_hours = float(rng.uniform(0.05, 0.10))  # nightly runs (team-hours agent)
        a.late_share = 0.5
        a.weekend_prob = 0.6
        a.build_fail = float(rng.uniform(0.15, 0.22))
        a.test_fail = float(rng.uniform(0.10, 0.15))
        a.review_weight = 0.0
        a.llm_per_item = float(rng.uniform(6.0, 10.0))
        a.switches = float(rng.uniform(2.0, 3.0))
        a.pr_rate = float(rng.uniform(0.8, 1.2))
        people.append(a)
    by_id = {a.actor_id: a for a in people}
    teams_map: dict[str, list[str]] = defaultdict(list)
    for a in people:
        teams_map[a.team_id].append(a.actor_id)

    # --- calendar: holidays (local dates) on weekdays after the warm-up
    plan = np.random.default_rng(plan_seq)
    weekdays = [d for d in range(n_days) if _weekday(start, d) < 5]
    org_holiday = int(plan.choice([d for d in weekdays if 4 * 7 <= d < 5 * 7]))
    regional_office = office_of_team[team_names[1]][0]
    regional_holiday = int(plan.choice([d for d in weekdays if 2 * 7 <= d < 3 * 7]))
    holidays = {org_holiday}

    # --- plants and noise, on distinct actors
    humans = [a for a in people if a.actor_type == "human"]
    agent_list = [a for a in people if a.actor_type == "ai_agent"]
    taken: set[str] = set()

    def pick(pool: list[_Actor], n: int) -> list[_Actor]:
        free = [a for a in pool if a.actor_id not in taken]
        if len(free) < n:
            raise ValueError(f"{actors} actors are too few for {instances} planted actors per "
                             "class plus the noise actors; use more actors or fewer instances")
        chosen = [free[int(i)] for i in plan.choice(len(free), size=n, replace=False)]
        taken.update(a.actor_id for a in chosen)
        return chosen

    big_team_humans = [a for a in humans if len(teams_map[a.team_id]) >= 5]
    plants: list[Plant] = []
    noise: list[Noise] = []
    last_start = n_days - 21  # every plant has at least three weeks before the end

    def window(cls: str) -> tuple[int, int]:
        if cls == "mentoring_potential":
            # A 28-day sum needs weeks to rise to the top and two more weeks there: mentors
            # start right after a two-week warm-up.
            s0 = int(plan.integers(MENTOR_START_DAYS, MENTOR_START_DAYS + 4))
        else:
            s0 = int(plan.integers(WARMUP_DAYS, max(WARMUP_DAYS + 1, last_start) + 1))
        length = (int(plan.integers(DROP_DAYS[0], DROP_DAYS[1] + 1))
                  if cls == "engagement_drop" else PLANT_DAYS[cls])
        return s0, min(n_days - 1, s0 + length - 1)

    # Mentors first: anyone but the top reviewer of a team of 5+ (room to rise), one per team
    # (only one person can rise to the top of a team).
    mentors: list[_Actor] = []
    for t in [str(x) for x in plan.permutation(sorted({a.team_id for a in big_team_humans}))]:
        members = [a for a in big_team_humans if a.team_id == t]
        top = max(a.review_weight for a in members)
        pool = [a for a in members if a.review_weight < top]  # room to rise
        if pool and len(mentors) < instances:
            mentors += pick(pool, 1)
    if len(mentors) < instances:
        raise ValueError("not enough teams of 5+ for the mentoring plants")
    chosen: dict[str, list[_Actor]] = {
        "mentoring_potential": mentors,
        "guardrail_overrides": pick(agent_list, instances),
    }
    for cls in ("burnout_risk", "rework_loop", "context_thrash", "engagement_drop"):
        chosen[cls] = pick(humans, instances)
    for cls in PLANT_CLASSES:
        for a in chosen[cls]:
            s0, s1 = window(cls)
            strength = round(float(plan.uniform(*STRENGTH_RANGE)), 3)
            team_top = max((m.review_weight for m in people
                            if m.team_id == a.team_id and m is not a), default=1.0)
            days_off = holidays | ({regional_holiday} if a.office == regional_office else set())
            plants.append(_apply_plant(a, cls, s0, s1, start, strength, team_top, days_off))

    # Noise: leave weeks (one right after a busy week), a ramping new joiner, sick days.
    leave_people = pick(humans, 4)
    for i, a in enumerate(leave_people):
        monday = int(plan.choice([d for d in range(3 * 7, n_days - 7)
                                  if _weekday(start, d) == 0]))
        for d in range(monday - 2, monday + 7):  # Sat..Sun: a whole week away
            a.mods[d]["leave"] = 1.0
        noise.append(Noise(a.actor_id, "leave", start + timedelta(days=monday - 2),
                           start + timedelta(days=monday + 6), "a week away (no events)"))
        if i == 0 and monday - 7 >= WARMUP_DAYS:
            for d in range(monday - 7, monday - 2):
                a.mods[d]["busy"] = 1.6
            noise.append(Noise(a.actor_id, "busy_week", start + timedelta(days=monday - 7),
                               start + timedelta(days=monday - 3),
                               "60 % more of everything the week before the leave"))
    joiner = pick(humans, 1)[0]
    joiner.first_day = 14
    noise.append(Noise(joiner.actor_id, "ramp_up", start + timedelta(days=14),
                       start + timedelta(days=14 + 20),
                       "joins on day 14, activity rising from 30 % to 100 % over 3 weeks"))
    for d in range(14, 35):
        joiner.mods[d]["ramp"] = 0.3 + 0.7 * (d - 14) / 20.0
    # Evening workers: people who always work late (a habit, not a change: nothing planted on
    # them). Mostly evenings, rarely weekends, so every week's after-hours share is 0.35-0.6.
    for a in pick(humans, int(plan.integers(EVENING_WORKERS[0], EVENING_WORKERS[1] + 1))):
        a.after_hours = float(plan.uniform(*EVENING_SHARE))
        a.late_share = float(plan.uniform(0.1, 0.25))
        a.weekend_prob = 0.02
        a.steady = float(plan.random())
        noise.append(Noise(a.actor_id, "evening_worker", start, end_day,
                           f"always works evenings: {a.after_hours:.0%} of workday events "
                           "after hours"))
    noise += [Noise(a.actor_id, "round_the_clock", start, end_day,
                    "an AI agent running at every hour of every day, in bursts")
              for a in agent_list if a.round_the_clock]

    # --- presence and intensity per actor-day
    for a in people:
        rng = a.rng
        for d in range(n_days):
            wd = _weekday(start, d)
            mods = a.mods.get(d, {})
            if d < a.first_day or mods.get("leave"):
                continue
            local_holiday = d in holidays or (a.office == regional_office
                                              and d == regional_holiday)
            busy = float(np.exp(rng.normal(0.0, 0.25)))
            if a.actor_type == "ai_agent":
                if a.round_the_clock:  # every day alike: weekends and holidays too
                    a.present[d] = a.activity * busy
                    a.hours[d] = _burst_hours(rng)
                    continue
                weekend_or_off = wd >= 5 or local_holiday
                a.present[d] = a.activity * busy * (0.2 if weekend_or_off else 1.0)
                continue
            if wd >= 5 or local_holiday:
                weekend_p = mods.get("weekend_prob", a.weekend_prob)
                if rng.random() < weekend_p:
                    a.present[d] = 0.25 * a.activity * busy * mods.get("weekend_boost", 1.0)
                continue
            if mods.get("absent"):
                continue
            if rng.random() < 0.02 and not mods:
                noise.append(Noise(a.actor_id, "sick_day", start + timedelta(days=d),
                                   start + timedelta(days=d), "one workday off"))
                continue
            a.present[d] = (a.activity * busy * mods.get("busy", 1.0) * mods.get("ramp", 1.0)
                            * mods.get("volume", 1.0))
    for a in people:
        if a.office == regional_office and a.actor_type == "human":
            noise.append(Noise(a.actor_id, "regional_holiday",
                               start + timedelta(days=regional_holiday),
                               start + timedelta(days=regional_holiday),
                               f"public holiday in {regional_office}"))

    envelopes = _emit(people, by_id, teams_map, start, n_days, tenant_id, seed,
                      np.random.default_rng(pr_seq))
    truth = GroundTruth(
        tenant_id=tenant_id, seed=seed, start_day=start, end_day=end_day,
        actors=[ActorTruth(a.actor_id, a.actor_type, a.team_id, _offset_str(a.offset_min),
                           start + timedelta(days=a.first_day)) for a in people],
        teams={t: list(v) for t, v in sorted(teams_map.items())},
        plants=sorted(plants, key=lambda p: (p.signal_class, p.actor_id)),
        noise=sorted(noise, key=lambda n: (n.start_day, n.actor_id, n.kind)),
        holidays=[start + timedelta(days=org_holiday)],
        regional_holidays={regional_office: [start + timedelta(days=regional_holiday)]})
    return Workload(envelopes, truth)


def _apply_plant(a: _Actor, cls: str, s0: int, s1: int, start: date, strength: float = 1.0,
                 team_top_review_weight: float = 1.0,
                 days_off: Collection[int] = ()) -> Plant:
    """Record the plant's day modifiers on the actor and describe it with its magnitudes.

    ``strength``: the share of the class's nominal effect this plant has (every change from
    the actor's habit is scaled by it). ``team_top_review_weight``: the highest review weight
    among the actor's teammates (a mentor rises to ``3 * strength`` times that, so it really
    reaches the top of the team). ``days_off``: the actor's local holidays (day indices)."""
    days = range(s0, s1 + 1)

    def put(**mods: float) -> None:
        for d in days:
            a.mods[d].update(mods)

    def toward(before: float, nominal: float) -> float:
        """``before`` moved by ``strength`` times the nominal change."""
        return round(before + (nominal - before) * strength, 4)

    if cls == "burnout_risk":
        ah, late = toward(a.after_hours, 0.45), toward(a.late_share, 0.35)
        wk, collab = toward(a.weekend_prob, 0.6), toward(1.0, 0.3)
        put(after_hours=ah, late_share=late, weekend_prob=wk, weekend_boost=toward(1.0, 1.5),
            collab=collab)
        mag = {"workday_after_hours_share": {"before": a.after_hours, "during": ah},
               "late_night_share_of_after_hours": {"before": a.late_share, "during": late},
               "weekend_work_probability": {"before": a.weekend_prob, "during": wk},
               "collaboration_factor": {"before": 1.0, "during": collab}}
        text = (f"after-hours drift to {ah:.0%} with weekend work, reviews and comments "
                f"falling to {collab:.0%}")
    elif cls == "rework_loop":
        bf, tf, runs = toward(a.build_fail, 0.45), toward(a.test_fail, 0.42), toward(1.0, 1.5)
        put(build_fail=bf, test_fail=tf, builds=runs)
        mag = {"build_failure_rate": {"before": a.build_fail, "during": bf},
               "test_failure_rate": {"before": a.test_fail, "during": tf},
               "builds_and_tests_factor": {"before": 1.0, "during": runs}}
        text = f"builds failing {bf:.0%} and tests {tf:.0%} of the time, x{runs:.2f} the runs"
    elif cls == "context_thrash":
        switches, prs, focus = toward(1.0, 4.0), toward(1.0, 0.6), toward(1.0, 0.85)
        put(switches=switches, prs=prs, focus=focus)
        mag = {"context_switches_per_workday": {"before": a.switches,
                                                "during": switches * a.switches},
               "pr_rate_factor": {"before": 1.0, "during": prs},
               "focus_minutes_factor": {"before": 1.0, "during": focus}}
        text = f"x{switches:.1f} the context switches, fewer PRs, slightly shorter focus"
    elif cls == "engagement_drop":
        # Nominally present on 35 % of workdays (1-2 of 5); at most 3 in a row away caps the
        # drop at 25 %, and at most 50 % keeps a day away after each present day (so never
        # more than 3 of 5).
        share = min(0.5, max(0.25, 1.0 - 0.65 * strength))
        present, workdays = _drop_presence(a, s0, s1, start, share, days_off)
        volume, focus, collab = toward(1.0, 0.6), toward(1.0, 0.5), toward(1.0, 0.6)
        put(volume=volume, focus=focus, collab=collab)
        mag = {"workdays_present_share": {"before": 0.98,
                                          "during": round(present / max(1, workdays), 3)},
               "event_volume_factor": {"before": 1.0, "during": volume},
               "focus_minutes_factor": {"before": 1.0, "during": focus}}
        text = (f"present on {present} of {workdays} workdays (never 4 in a row away), "
                f"{volume:.0%} of the usual activity, focus sessions at {focus:.0%}")
    elif cls == "guardrail_overrides":
        overrides, violations = toward(0.05, 2.5), toward(0.05, 0.8)
        put(overrides=overrides, violations=violations)
        mag = {"override_attempts_per_day": {"before": 0.05, "during": overrides},
               "policy_violations_per_day": {"before": 0.05, "during": violations}}
        text = (f"the agent attempts {overrides:.1f} overrides and violates {violations:.1f} "
                "policies a day")
    elif cls == "mentoring_potential":
        weight = 3.0 * strength * team_top_review_weight
        factor = weight / a.review_weight
        put(review=factor)
        mag = {"review_weight": {"before": a.review_weight, "during": weight},
               "review_weight_factor": {"before": 1.0, "during": factor}}
        text = "reviews given rise to the top of the team"
    else:  # pragma: no cover - PLANT_CLASSES is closed
        raise ValueError(cls)
    return Plant(a.actor_id, cls, start + timedelta(days=s0), start + timedelta(days=s1), mag,
                 text, strength)


#: An engagement drop's longest run of workdays away, the actor's holidays included: well
#: short of the five workdays of a week's leave.
DROP_MAX_AWAY_RUN = 3


def _drop_presence(a: _Actor, s0: int, s1: int, start: date, share: float,
                   days_off: Collection[int]) -> tuple[int, int]:
    """Mark the workdays of [s0, s1] on which an engagement-drop actor stays away, so it is
    present on about ``share`` (0.25-0.5) of them: between present days, runs of 1-3 workdays
    away, of the two whole lengths around ``1 / share - 1`` (so the share is close to the plan
    even over one week), never more than ``DROP_MAX_AWAY_RUN`` in a row counting the actor's
    holidays. Returns (workdays present, workdays not on holiday)."""
    def workday(d: int) -> bool:
        return _weekday(start, d) < 5

    mean_run = min(float(DROP_MAX_AWAY_RUN), 1.0 / share - 1.0)

    def next_run() -> int:
        return int(mean_run) + int(a.rng.random() < mean_run - int(mean_run))

    run = 0  # holidays right before the plant start the run
    d = s0 - 1
    while d >= s0 - 7 and (not workday(d) or d in days_off):
        run += workday(d)
        d -= 1
    # ``run``: workdays away in a row, holidays included (for the cap); ``away``: those the
    # plant chose (holidays are not the drop); the plant starts anywhere in a run.
    away, want = 0, int(a.rng.integers(0, next_run() + 1))
    present = workdays = 0
    for d in range(s0, s1 + 1):
        if not workday(d):
            continue
        if d in days_off:
            run += 1
            continue
        workdays += 1
        ahead, e = 0, d + 1  # holidays right after d would extend the run
        while e <= s1 + 7 and (not workday(e) or e in days_off):
            ahead += workday(e)
            e += 1
        if away < want and run + 1 + ahead <= DROP_MAX_AWAY_RUN:
            a.mods[d]["absent"] = 1.0
            run, away = run + 1, away + 1
        else:
            present += 1
            run, away, want = 0, 0, next_run()
    # No sick day in the week before or after: it would lengthen a run of days away.
    for d in [*range(s0 - 7, s0), *range(s1 + 1, s1 + 8)]:
        if not a.mods.get(d):
            a.mods[d]["steady"] = 1.0
    return present, workdays


# --- emitting events ---------------------------------------------------------------------------

class _Emitter:
    """Collects envelopes for actors, placing each event at a local time of the actor."""

    def __init__(self, start: date, tenant_id: str, seed: int) -> None:
        self.start = start
        self.tenant_id = tenant_id
        self.seed = seed
        self.rows: list[tuple[float, str, dict[str, Any]]] = []
        self.seq: dict[str, int] = defaultdict(int)

    def local_time(self, a: _Actor, d: int, rng: np.random.Generator, *,
                   in_hours_only: bool = False) -> float:
        """Hours after local midnight of day ``d`` (may exceed 24 for after-midnight work)."""
        cum = a.hours.get(d)
        if cum is not None:  # a round-the-clock agent: an hour of the day's bursts
            hour = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
            return hour + float(rng.random())
        mods = a.mods.get(d, {})
        weekend = _weekday(self.start, d) >= 5
        if a.actor_type == "human" and weekend:
            return float(rng.uniform(10.0, 23.5))
        ah = mods.get("after_hours", a.after_hours)
        if in_hours_only or a.after_hours_draw(rng) >= ah:
            return float(rng.uniform(WORK_START_H, WORK_END_H))
        if rng.random() < mods.get("late_share", a.late_share):
            return float(rng.uniform(22.0, 26.0))  # 22:00 - 02:00
        return float(rng.uniform(18.0, 22.0)) if rng.random() < 0.8 else float(
            rng.uniform(6.5, WORK_START_H))

    def emit(self, a: _Actor, d: int, hour: float, event_type: str,
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


def _emit(people: list[_Actor], by_id: Mapping[str, _Actor],
          teams: Mapping[str, list[str]], start: date, n_days: int, tenant_id: str,
          seed: int, pr_rng: np.random.Generator) -> list[dict[str, Any]]:
    em = _Emitter(start, tenant_id, seed)
    item_counter: dict[str, int] = defaultdict(int)

    def work_item(a: _Actor) -> str:
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
            if not agent and _weekday(start, d) < 5:
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
            if d not in a.present or (a.actor_type == "human" and _weekday(start, d) >= 5):
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


def _review_weight(r: _Actor, d: int) -> float:
    mods = r.mods.get(d, {})
    return r.review_weight * mods.get("review", 1.0) * mods.get("collab", 1.0)


def _pull_request(em: _Emitter, author: _Actor, d: int, by_id: Mapping[str, _Actor],
                  teams: Mapping[str, list[str]], humans: list[_Actor],
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
                   and not (r.actor_type == "human" and _weekday(em.start, x) >= 5)), None)
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
               if x in closer.present and _weekday(em.start, x) < 5), None)
    if md is None:
        return
    counterpart = reviewers[0].actor_id if closer is author else author.actor_id
    closed = rng.random() < 0.08
    em.emit(closer, md, em.local_time(closer, md, rng), "pr_closed" if closed else "pr_merged",
            {"counterpart_actor_id": counterpart, "work_item_id": item})


def iter_plants(truth: GroundTruth, signal_class: str) -> Iterator[Plant]:
    """The plants of one class."""
    return (p for p in truth.plants if p.signal_class == signal_class)
