"""Planted behaviour changes and the noise that must not fire, on the generated actors.

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

Noise that must not fire (``GroundTruth.noise``)
------------------------------------------------
A week of leave for several actors (one of them right after an unusually busy week), a new
joiner ramping up from 30 % to full activity over three weeks, single sick days, holidays, the
evening workers, the round-the-clock agents, and ordinary day-to-day variance. The people on
leave, the new joiner and the evening workers have nothing planted; a round-the-clock agent may
carry a guardrail plant. Sick days and the regional holiday are recorded by
``organisation.schedule_presence``.

- Two to four evening workers: people whose habit is 44-52 % of workday events after hours
  (mostly 18:00-22:00), all along, so every week's after-hours share is 0.35-0.6.

Plants and noise act through the actors: day modifiers (``Actor.mods``) or changed habits,
which the presence schedule and the event emission read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, timedelta

import numpy as np

from ubi.simulation.organisation import Actor, Calendar, weekday
from ubi.simulation.workload import Noise, Plant

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


class ActorPicker:
    """Draws actors for the plants and the noise from the plan's stream, each actor once: a
    planted actor carries one change and no noise."""

    def __init__(self, plan: np.random.Generator, n_actors: int, instances: int) -> None:
        self.plan = plan
        self.n_actors = n_actors
        self.instances = instances
        self.taken: set[str] = set()

    def __call__(self, pool: list[Actor], n: int) -> list[Actor]:
        free = [a for a in pool if a.actor_id not in self.taken]
        if len(free) < n:
            raise ValueError(f"{self.n_actors} actors are too few for {self.instances} planted "
                             "actors per class plus the noise actors; use more actors or fewer "
                             "instances")
        chosen = [free[int(i)] for i in self.plan.choice(len(free), size=n, replace=False)]
        self.taken.update(a.actor_id for a in chosen)
        return chosen


def plant_changes(people: list[Actor], teams: Mapping[str, list[str]], pick: ActorPicker,
                  cal: Calendar, instances: int) -> list[Plant]:
    """Choose ``instances`` actors per class and a window for each, and plant the change on
    them (day modifiers on the actor). Draws from ``pick.plan`` (and, for an engagement drop,
    the actor's own stream)."""
    plan, start, n_days = pick.plan, cal.start, cal.n_days
    humans = [a for a in people if a.actor_type == "human"]
    agent_list = [a for a in people if a.actor_type == "ai_agent"]
    big_team_humans = [a for a in humans if len(teams[a.team_id]) >= 5]
    plants: list[Plant] = []
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
    mentors: list[Actor] = []
    for t in [str(x) for x in plan.permutation(sorted({a.team_id for a in big_team_humans}))]:
        members = [a for a in big_team_humans if a.team_id == t]
        top = max(a.review_weight for a in members)
        pool = [a for a in members if a.review_weight < top]  # room to rise
        if pool and len(mentors) < instances:
            mentors += pick(pool, 1)
    if len(mentors) < instances:
        raise ValueError("not enough teams of 5+ for the mentoring plants")
    chosen: dict[str, list[Actor]] = {
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
            plants.append(_apply_plant(a, cls, s0, s1, start, strength, team_top,
                                       cal.days_off(a)))
    return plants


def plant_noise(people: list[Actor], pick: ActorPicker, cal: Calendar) -> list[Noise]:
    """Leave weeks (one right after a busy week), a ramping new joiner and the evening workers
    on actors with nothing planted, and the round-the-clock agents, as day modifiers and
    habits on the actors. Draws from ``pick.plan``; call after ``plant_changes``."""
    plan, start, n_days, end_day = pick.plan, cal.start, cal.n_days, cal.end_day
    humans = [a for a in people if a.actor_type == "human"]
    noise: list[Noise] = []
    leave_people = pick(humans, 4)
    for i, a in enumerate(leave_people):
        monday = int(plan.choice([d for d in range(3 * 7, n_days - 7)
                                  if weekday(start, d) == 0]))
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
              for a in people if a.actor_type == "ai_agent" and a.round_the_clock]
    return noise


def _apply_plant(a: Actor, cls: str, s0: int, s1: int, start: date, strength: float = 1.0,
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


def _drop_presence(a: Actor, s0: int, s1: int, start: date, share: float,
                   days_off: Collection[int]) -> tuple[int, int]:
    """Mark the workdays of [s0, s1] on which an engagement-drop actor stays away, so it is
    present on about ``share`` (0.25-0.5) of them: between present days, runs of 1-3 workdays
    away, of the two whole lengths around ``1 / share - 1`` (so the share is close to the plan
    even over one week), never more than ``DROP_MAX_AWAY_RUN`` in a row counting the actor's
    holidays. Returns (workdays present, workdays not on holiday)."""
    def workday(d: int) -> bool:
        return weekday(start, d) < 5

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
