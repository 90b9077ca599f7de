"""A realistic engineering organisation as SignalEnvelopes, with planted truth (issue 6).

``generate(seed, ...)`` builds a tenant of about 60 actors over ``weeks`` weeks ending on
``end_day`` and returns a ``Workload``: the envelopes (JSON-able dicts in the SPEC §3 shape) and
a ``GroundTruth`` that says who was planted with which behaviour change, when, and by how much.
Deterministic for a seed: all randomness comes from one ``numpy.random.Generator`` tree
(``SeedSequence(seed)``, one child stream per actor and one per concern), and no clock is read.

This module runs the steps in order; each part, and its description, lives beside it:

- ``organisation``: offices, teams, actors with their habits, the calendar, and on which days
  each actor works;
- ``plants``: the planted behaviour changes and the noise that must not fire;
- ``emission``: each present actor-day as envelopes (rates per workday, pull requests);
- ``workload``: ``Workload`` and ``GroundTruth``, and their files (``write_jsonl``,
  ``write_truth``, ``read_truth``, ``truth_path_for``).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from ubi.simulation.emission import emit_envelopes
from ubi.simulation.organisation import (
    Calendar,
    build_organisation,
    offset_str,
    schedule_presence,
    weekday,
)
from ubi.simulation.plants import PLANT_CLASSES, ActorPicker, plant_changes, plant_noise
from ubi.simulation.workload import (
    ActorTruth,
    GroundTruth,
    Workload,
    read_truth,
    truth_path_for,
    write_jsonl,
    write_truth,
)

#: Re-exported here: callers import the generator's whole interface from this module.
__all__ = [
    "DEFAULT_END_DAY", "DEFAULT_TENANT", "PLANT_CLASSES", "Workload", "generate", "read_truth",
    "truth_path_for", "write_jsonl", "write_truth",
]

#: Default last day of a generated range (a Sunday): a parameter, never the wall clock.
DEFAULT_END_DAY = date(2025, 3, 30)
DEFAULT_TENANT = "sim-org"


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
    n_days = 7 * weeks
    start = end_day - timedelta(days=n_days - 1)
    org = build_organisation(actors - agents, teams, agents, np.random.default_rng(org_seq),
                             actor_seq)

    # --- calendar: holidays (local dates) on weekdays after the warm-up
    plan = np.random.default_rng(plan_seq)
    weekdays = [d for d in range(n_days) if weekday(start, d) < 5]
    org_holiday = int(plan.choice([d for d in weekdays if 4 * 7 <= d < 5 * 7]))
    regional_office = org.office_of_team[org.team_names[1]][0]
    regional_holiday = int(plan.choice([d for d in weekdays if 2 * 7 <= d < 3 * 7]))
    cal = Calendar(start, n_days, frozenset({org_holiday}), regional_office, regional_holiday)

    # --- plants and noise, on distinct actors; the order of the steps is the order of the
    # draws from each stream, so it is part of what a seed means.
    pick = ActorPicker(plan, actors, instances)
    plants = plant_changes(org.people, org.teams, pick, cal, instances)
    noise = plant_noise(org.people, pick, cal)
    # --- presence and intensity per actor-day, reading what the plants and noise left
    noise += schedule_presence(org.people, cal)

    envelopes = emit_envelopes(org.people, org.by_id, org.teams, start, n_days, tenant_id, seed,
                               np.random.default_rng(pr_seq))
    truth = GroundTruth(
        tenant_id=tenant_id, seed=seed, start_day=start, end_day=end_day,
        actors=[ActorTruth(a.actor_id, a.actor_type, a.team_id, offset_str(a.offset_min),
                           start + timedelta(days=a.first_day)) for a in org.people],
        teams={t: list(v) for t, v in sorted(org.teams.items())},
        plants=sorted(plants, key=lambda p: (p.signal_class, p.actor_id)),
        noise=sorted(noise, key=lambda n: (n.start_day, n.actor_id, n.kind)),
        holidays=[start + timedelta(days=org_holiday)],
        regional_holidays={regional_office: [start + timedelta(days=regional_holiday)]})
    return Workload(envelopes, truth)
