"""A generated workload and its ground truth: what ``generate`` returns, and their files.

``Workload`` holds the envelopes (time-ordered JSON-able dicts, SPEC §3) and a ``GroundTruth``:
the actors and teams, the planted behaviour changes (``Plant``), the noise that must not fire
(``Noise``) and the holidays. ``write_jsonl``, ``write_truth`` and ``read_truth`` are the
simulation package's only I/O; ``truth_path_for`` says where an envelope file's truth lives.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


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


def iter_plants(truth: GroundTruth, signal_class: str) -> Iterator[Plant]:
    """The plants of one class."""
    return (p for p in truth.plants if p.signal_class == signal_class)
