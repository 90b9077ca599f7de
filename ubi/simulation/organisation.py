"""The generated organisation: offices, teams, actors with their habits, and their days.

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

``build_organisation`` draws the teams and the actors' habits; ``schedule_presence`` decides,
once the plants and the noise have left their day modifiers on the actors, on which days each
actor works and how intensely (``Actor.present``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from ubi.simulation.workload import Noise

#: Offices: (name, UTC offset in minutes). Fixed offsets: the range is short and a producer
#: stamps the offset it had at the time anyway.
OFFICES: tuple[tuple[str, int], ...] = (
    ("berlin", 60), ("new-york", -300), ("bangalore", 330), ("london", 0),
    ("sao-paulo", -180), ("tokyo", 540), ("san-francisco", -480),
)
TEAM_NAMES: tuple[str, ...] = (
    "payments", "platform", "search", "mobile", "data", "infra", "growth", "billing",
    "identity", "observability", "checkout", "ml")

WORK_START_H, WORK_END_H = 9.0, 18.0


# --- actors and their habits ------------------------------------------------------------------

_GOLDEN = 0.6180339887498949  # the golden ratio's fractional part: a low-discrepancy step


@dataclass
class Actor:
    """One simulated actor: its habits, and the day-level state the plan fills in."""

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


def offset_str(minutes: int) -> str:
    """A UTC offset in minutes as ``+HH:MM`` / ``-HH:MM``."""
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


def weekday(start: date, d: int) -> int:
    """The weekday (Monday 0) of day index ``d`` of a range starting on ``start``."""
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


# --- teams -------------------------------------------------------------------------------------

@dataclass
class Organisation:
    """``people``: the humans team by team, then the agents; ``teams``: team -> actor ids."""

    people: list[Actor]
    team_names: list[str]
    #: Each team's office: (name, UTC offset in minutes).
    office_of_team: dict[str, tuple[str, int]]
    teams: dict[str, list[str]]
    by_id: dict[str, Actor]


def build_organisation(n_humans: int, n_teams: int, agents: int, rng: np.random.Generator,
                       actor_seq: np.random.SeedSequence) -> Organisation:
    """Teams of humans with personal habits, then the agents; ``rng`` draws the team sizes,
    each actor gets its own stream from ``actor_seq`` (and keeps it for its whole life)."""
    sizes = _team_sizes(n_humans, n_teams, rng)
    team_names = list(TEAM_NAMES[:n_teams]) if n_teams <= len(TEAM_NAMES) else [
        f"team-{i + 1:02d}" for i in range(n_teams)]
    office_of_team = {t: OFFICES[i % len(OFFICES)] for i, t in enumerate(team_names)}
    actor_rngs = [np.random.default_rng(s) for s in actor_seq.spawn(n_humans + agents)]
    people: list[Actor] = []
    k = 0
    for team, size in zip(team_names, sizes, strict=True):
        for _ in range(size):
            rng = actor_rngs[k]
            k += 1
            office, offset = office_of_team[team]
            if rng.random() < 0.12:  # a remote member in another office
                office, offset = OFFICES[int(rng.integers(len(OFFICES)))]
            a = Actor(f"dev-{k:03d}", "human", team, office, offset, 0, rng)
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
        a = Actor(f"agent-{i + 1:02d}", "ai_agent", team, office, offset, 0, rng)
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
    teams: dict[str, list[str]] = defaultdict(list)
    for a in people:
        teams[a.team_id].append(a.actor_id)
    return Organisation(people, team_names, office_of_team, teams,
                        {a.actor_id: a for a in people})


# --- the calendar and each actor's days --------------------------------------------------------

@dataclass(frozen=True)
class Calendar:
    """The range (day indices from ``start``) and its holidays, as day indices of local
    dates: the organisation-wide ``holidays`` and ``regional_holiday`` in one office."""

    start: date
    n_days: int
    holidays: frozenset[int]
    regional_office: str
    regional_holiday: int

    @property
    def end_day(self) -> date:
        return self.start + timedelta(days=self.n_days - 1)

    def days_off(self, a: Actor) -> frozenset[int]:
        """The actor's local holidays: the organisation's, and its office's regional one."""
        return self.holidays | ({self.regional_holiday} if a.office == self.regional_office
                                else set())


def schedule_presence(people: list[Actor], cal: Calendar) -> list[Noise]:
    """Presence and intensity per actor-day (``Actor.present``; a round-the-clock agent's
    ``hours`` too), from each actor's habits and the day modifiers already on it (plants,
    leave, ramp-up). Returns the noise this makes: sick days, then the regional holiday."""
    start = cal.start
    noise: list[Noise] = []
    for a in people:
        rng = a.rng
        days_off = cal.days_off(a)
        for d in range(cal.n_days):
            wd = weekday(start, d)
            mods = a.mods.get(d, {})
            if d < a.first_day or mods.get("leave"):
                continue
            local_holiday = d in days_off
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
        if a.office == cal.regional_office and a.actor_type == "human":
            noise.append(Noise(a.actor_id, "regional_holiday",
                               start + timedelta(days=cal.regional_holiday),
                               start + timedelta(days=cal.regional_holiday),
                               f"public holiday in {cal.regional_office}"))
    return noise
