"""How good are the signals? Scorecards against planted truth and on real histories (issue 6).

Pure functions over plain records: no I/O, no clock.

Signals
-------
``score_signals`` and ``real_history_report`` accept the engine's ``Signal`` objects, its
``SignalChange`` records, or dicts with ``actor_scope``, ``subject_id`` (or ``actor_id``),
``signal_class``, ``severity`` and either ``first_day`` (UTC day number, ``date`` or ISO date)
or ``created_at`` (datetime or ISO string; the engine stamps a day's signal at the end of that
UTC day, so the day is the UTC date one second before ``created_at``), optionally
``signal_id``. Records are folded into **episodes**, one per ``signal_id`` (else per actor,
class and first day): its first day is the earliest, its severity the highest of its versions.
Subject ids are mapped through ``actor_of`` when given (the engine's pseudonym -> original id
map from ``replay``); ids not in the map are kept as they are, so raw ids work too.

Only **actor-scope** episodes are scored; team, cohort and tenant episodes are counted apart
(``group_signals``).

Scorecard definitions (``score_signals``)
-----------------------------------------
- **Detection**: a planted change (actor, class, start, end) is detected when an actor-scope
  episode of the same class on the same actor has its first day in
  ``[start, end + grace_days]`` (``grace_days`` default 7: a 7-day window needs days to
  show a change, and a change planted at the end of the range is still fresh). Recall of a
  class = detected plants / planted. An episode created before ``start`` does not count, even
  if it is still active: it was raised for something else.
- **Days to detect** of a detected plant = the first day of its earliest matching episode -
  the plant's start day; ``median_days_to_detect`` of a class is their median over its
  detected plants (``None`` when none was detected).
- **Precision** of a class = episodes of that class on an actor planted with it whose first
  day lies in ``[start, end + precision_grace_days]`` of such a plant (default 14: a signal
  still reporting a change that ended a week ago is right, not noise) / all actor-scope
  episodes of that class; ``None`` when the class raised nothing.
- **Warm-up**: an actor is in warm-up on day ``d`` while fewer than ``min_days`` (the
  baseline's ``min_days``, default 7) tenant workdays lie in ``[first_day, d)``, where
  ``first_day`` is the actor's first day in the truth (the day it joined or the range began).
  No baseline of the actor can be trusted before that (SPEC §5.2), so no episode may start
  there: ``warmup_signals`` counts those that do (any class).
- **Actor-week**: a Monday-aligned week of the evaluated range (partial weeks at either end
  count) for an actor whose warm-up ended on or before the week's Monday. (An episode in the
  rest of the week in which warm-up ends is in neither count.)
- **Clean actor-week**: an actor-week with nothing planted for that actor, i.e. no plant of
  that actor whose window ``[start, end + grace_days]`` overlaps the week. Leave, ramp-up and
  ordinary variance are not plants: their weeks are clean, and anything raised there is noise.
  ``signals_on_clean_actor_weeks`` = actor-scope episodes (any class, any severity, INFO
  included) whose first day falls in a clean actor-week; the target is at most 1 per 20 clean
  actor-weeks. The same counts are split by the actor's type in the truth (``human``,
  ``ai_agent``: ``by_actor_type``), and the episodes on clean actor-weeks are counted per class
  (``noise_by_class``, overall and per type) to show which classes are noisy.

Real history (``real_history_report``)
--------------------------------------
An **active actor-month** is a calendar month (UTC) in which the actor has events on at least
4 distinct UTC days. The alert rate is actor-scope episodes of severity WARN or higher per
active actor-month (target at most 0.25).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Any

from ubi.analytics.taxonomy import SEVERITY_RANK

DEFAULT_GRACE_DAYS = 7
DEFAULT_PRECISION_GRACE_DAYS = 14
DEFAULT_MIN_DAYS = 7
ACTIVE_MONTH_MIN_DAYS = 4
_EPOCH = date(1970, 1, 1)


# --- signal records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """One signal episode: first day, highest severity (see the module docstring)."""

    signal_id: str
    actor_scope: str
    actor_id: str
    signal_class: str
    severity: str
    first_day: date


def _as_day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int):
        return _EPOCH + timedelta(days=value)
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    raise TypeError(f"not a day: {value!r}")


def _created_day(value: Any) -> date:
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(ts, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    # A day's signal is stamped when the day's value is known: the end of that UTC day.
    return (ts - timedelta(seconds=1)).date()


def _fields(record: Any) -> dict[str, Any]:
    rec = getattr(record, "signal", record)  # a SignalChange carries its Signal
    if isinstance(rec, Mapping):
        get = rec.get
    else:
        def get(key: str, default: Any = None) -> Any:
            return getattr(rec, key, default)
    subject = get("subject_id") or get("actor_id")
    if get("first_day") is not None:
        day = _as_day(get("first_day"))
    elif get("created_at") is not None:
        day = _created_day(get("created_at"))
    else:
        raise ValueError("a signal needs first_day or created_at")
    return {"signal_id": get("signal_id"), "actor_scope": get("actor_scope") or "actor",
            "subject": str(subject), "signal_class": str(get("signal_class")),
            "severity": str(get("severity") or "INFO"), "day": day}


def episodes(signals: Iterable[Any], actor_of: Mapping[str, str] | None = None
             ) -> list[Episode]:
    """Fold signal records (any accepted form) into episodes, sorted by first day."""
    folded: dict[str, dict[str, Any]] = {}
    for record in signals:
        f = _fields(record)
        subject = (actor_of or {}).get(f["subject"], f["subject"])
        key = f["signal_id"] or f"{f['actor_scope']}|{subject}|{f['signal_class']}|{f['day']}"
        cur = folded.get(key)
        if cur is None:
            folded[key] = {**f, "subject": subject, "key": key}
            continue
        cur["day"] = min(cur["day"], f["day"])
        if SEVERITY_RANK.get(f["severity"], 0) > SEVERITY_RANK.get(cur["severity"], 0):
            cur["severity"] = f["severity"]
    out = [Episode(v["key"], v["actor_scope"], v["subject"], v["signal_class"], v["severity"],
                   v["day"]) for v in folded.values()]
    out.sort(key=lambda e: (e.first_day, e.actor_id, e.signal_class, e.signal_id))
    return out


# --- ground truth as the scorecard reads it ----------------------------------------------------

@dataclass(frozen=True)
class PlantWindow:
    """A planted change as the scorecard reads it (``workload.Plant`` satisfies this)."""

    actor_id: str
    signal_class: str
    start_day: date
    end_day: date


def _truth_parts(truth: Any) -> tuple[list[PlantWindow], dict[str, date], date, date,
                                      frozenset[date], dict[str, str]]:
    """(plants, actor -> first day, range start, range end, holidays, actor -> actor type)
    from a ``GroundTruth`` or its ``as_dict()`` form."""
    get = truth.get if isinstance(truth, Mapping) else (lambda k: getattr(truth, k))

    def item(obj: Any, key: str) -> Any:
        return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)

    plants = [PlantWindow(str(item(p, "actor_id")), str(item(p, "signal_class")),
                          _as_day(item(p, "start_day")), _as_day(item(p, "end_day")))
              for p in get("plants") or ()]
    first = {str(item(a, "actor_id")): _as_day(item(a, "first_day"))
             for a in get("actors") or ()}
    kind = {str(item(a, "actor_id")): str(item(a, "actor_type")) for a in get("actors") or ()}
    holidays = frozenset(_as_day(h) for h in (get("holidays") or ()))
    return plants, first, _as_day(get("start_day")), _as_day(get("end_day")), holidays, kind


def _is_workday(d: date, holidays: frozenset[date], workdays: frozenset[int]) -> bool:
    return d.weekday() in workdays and d not in holidays


def warmup_end(first_day: date, *, min_days: int = DEFAULT_MIN_DAYS,
               holidays: frozenset[date] = frozenset(),
               workdays: frozenset[int] = frozenset(range(5))) -> date:
    """The first day on which ``min_days`` workdays lie in ``[first_day, day)``."""
    d, seen = first_day, 0
    while seen < min_days:
        seen += _is_workday(d, holidays, workdays)
        d += timedelta(days=1)
    return d


# --- the scorecard -----------------------------------------------------------------------------

@dataclass
class ClassScore:
    planted: int
    detected: int
    signals: int
    matching_signals: int
    #: Days from each detected plant's start to its first matching episode.
    days_to_detect: list[int] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.planted if self.planted else None

    @property
    def precision(self) -> float | None:
        return self.matching_signals / self.signals if self.signals else None

    @property
    def median_days_to_detect(self) -> float | None:
        return float(median(self.days_to_detect)) if self.days_to_detect else None

    def as_dict(self) -> dict[str, Any]:
        r, p = self.recall, self.precision
        return {"planted": self.planted, "detected": self.detected,
                "precision": None if p is None else round(p, 4),
                "recall": None if r is None else round(r, 4),
                "median_days_to_detect": self.median_days_to_detect,
                "days_to_detect": sorted(self.days_to_detect),
                "signals": self.signals, "matching_signals": self.matching_signals}


@dataclass
class TypeNoise:
    """Clean actor-weeks of one actor type and the episodes on them, per class."""

    clean_actor_weeks: int = 0
    noise_by_class: Counter[str] = field(default_factory=Counter)

    @property
    def signals_on_clean_actor_weeks(self) -> int:
        return sum(self.noise_by_class.values())

    @property
    def clean_rate(self) -> float:
        return (self.signals_on_clean_actor_weeks / self.clean_actor_weeks
                if self.clean_actor_weeks else 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {"clean_actor_weeks": self.clean_actor_weeks,
                "signals_on_clean_actor_weeks": self.signals_on_clean_actor_weeks,
                "signals_per_clean_actor_week": round(self.clean_rate, 4),
                "noise_by_class": dict(sorted(self.noise_by_class.items()))}


@dataclass
class Scorecard:
    """Result of ``score_signals``; ``as_dict()`` is the JSON the demo prints."""

    classes: dict[str, ClassScore]
    clean_actor_weeks: int
    signals_on_clean_actor_weeks: int
    warmup_signals: int
    actor_weeks: int
    other_classes: dict[str, int] = field(default_factory=dict)
    group_signals: dict[str, int] = field(default_factory=dict)
    #: Episodes on clean actor-weeks per class, and the clean figures per actor type.
    noise_by_class: dict[str, int] = field(default_factory=dict)
    by_actor_type: dict[str, TypeNoise] = field(default_factory=dict)
    #: Plants no episode detected; planted-class episodes matching no plant (precision's
    #: window); episodes on clean actor-weeks; episodes during warm-up (for the report).
    missed: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    noise: list[dict[str, Any]] = field(default_factory=list)
    warmup: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean_rate(self) -> float:
        """Signals per clean actor-week (target <= 0.05, i.e. 1 per 20)."""
        return (self.signals_on_clean_actor_weeks / self.clean_actor_weeks
                if self.clean_actor_weeks else 0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "classes": {c: s.as_dict() for c, s in self.classes.items()},
            "clean_actor_weeks": self.clean_actor_weeks,
            "signals_on_clean_actor_weeks": self.signals_on_clean_actor_weeks,
            "signals_per_clean_actor_week": round(self.clean_rate, 4),
            "noise_by_class": dict(self.noise_by_class),
            "by_actor_type": {t: n.as_dict() for t, n in sorted(self.by_actor_type.items())},
            "warmup_signals": self.warmup_signals,
            "actor_weeks": self.actor_weeks,
            "other_classes": dict(self.other_classes),
            "group_signals": dict(self.group_signals),
            "missed": list(self.missed),
            "unmatched": list(self.unmatched),
            "noise": list(self.noise),
            "warmup": list(self.warmup),
        }


def score_signals(signals: Iterable[Any], truth: Any, *,
                  actor_of: Mapping[str, str] | None = None,
                  grace_days: int = DEFAULT_GRACE_DAYS,
                  precision_grace_days: int = DEFAULT_PRECISION_GRACE_DAYS,
                  min_days: int = DEFAULT_MIN_DAYS,
                  workdays: Iterable[int] = range(5)) -> Scorecard:
    """Score signals against planted truth (definitions in the module docstring).

    ``truth``: a ``workload.GroundTruth`` or its ``as_dict()``. ``grace_days``: after a
    plant's end, for recall and clean weeks; ``precision_grace_days``: the same for precision.
    ``workdays``: the tenant's working week (Monday = 0), for warm-up counting.
    """
    plants, first_day, start, end, holidays, actor_type = _truth_parts(truth)
    week_days = frozenset(workdays)
    grace = timedelta(days=grace_days)
    precision_grace = timedelta(days=precision_grace_days)
    eps = episodes(signals, actor_of)
    actor_eps = [e for e in eps if e.actor_scope == "actor"]
    group = Counter(f"{e.actor_scope}:{e.signal_class}" for e in eps if e.actor_scope != "actor")

    planted_classes = sorted({p.signal_class for p in plants})
    by_actor_plants: dict[str, list[PlantWindow]] = defaultdict(list)
    for p in plants:
        by_actor_plants[p.actor_id].append(p)

    def matches(e: Episode, p: PlantWindow, after_end: timedelta = grace) -> bool:
        return (e.actor_id == p.actor_id and e.signal_class == p.signal_class
                and p.start_day <= e.first_day <= p.end_day + after_end)

    classes: dict[str, ClassScore] = {}
    missed: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    for c in planted_classes:
        cp = [p for p in plants if p.signal_class == c]
        ce = [e for e in actor_eps if e.signal_class == c]
        days_to_detect: list[int] = []
        for p in cp:
            hits = [e.first_day for e in ce if matches(e, p)]
            if hits:
                days_to_detect.append((min(hits) - p.start_day).days)
            else:
                missed.append({"actor_id": p.actor_id, "signal_class": c,
                               "start_day": p.start_day.isoformat(),
                               "end_day": p.end_day.isoformat()})
        good = 0
        for e in ce:
            if any(matches(e, p, precision_grace) for p in cp):
                good += 1
            else:
                unmatched.append(_episode_dict(e))
        classes[c] = ClassScore(len(cp), len(days_to_detect), len(ce), good, days_to_detect)
    other = Counter(e.signal_class for e in actor_eps if e.signal_class not in classes)

    warm_end = {a: warmup_end(d, min_days=min_days, holidays=holidays, workdays=week_days)
                for a, d in first_day.items()}
    warmup = [e for e in actor_eps if e.actor_id in warm_end and e.first_day < warm_end[e.actor_id]]

    # Actor-weeks: Monday-aligned weeks touching [start, end], after the actor's warm-up.
    monday = start - timedelta(days=start.weekday())
    weeks = []
    while monday <= end:
        weeks.append(monday)
        monday += timedelta(days=7)
    n_weeks = n_clean = 0
    clean_weeks: set[tuple[str, date]] = set()
    by_type: dict[str, TypeNoise] = {t: TypeNoise() for t in sorted(set(actor_type.values()))}
    for actor, w_end in warm_end.items():
        for wk in weeks:
            if wk < w_end:
                continue
            n_weeks += 1
            wk_last = wk + timedelta(days=6)
            touched = any(p.start_day <= wk_last and wk <= p.end_day + grace
                          for p in by_actor_plants.get(actor, ()))
            if not touched:
                n_clean += 1
                clean_weeks.add((actor, wk))
                by_type[actor_type[actor]].clean_actor_weeks += 1
    on_clean = [e for e in actor_eps
                if (e.actor_id, e.first_day - timedelta(days=e.first_day.weekday()))
                in clean_weeks]
    for e in on_clean:
        by_type[actor_type[e.actor_id]].noise_by_class[e.signal_class] += 1
    noise_by_class = Counter(e.signal_class for e in on_clean)
    return Scorecard(classes=classes, clean_actor_weeks=n_clean,
                     signals_on_clean_actor_weeks=len(on_clean), warmup_signals=len(warmup),
                     actor_weeks=n_weeks, other_classes=dict(sorted(other.items())),
                     group_signals=dict(sorted(group.items())),
                     noise_by_class=dict(sorted(noise_by_class.items())),
                     by_actor_type=by_type, missed=missed,
                     unmatched=unmatched, noise=[_episode_dict(e) for e in on_clean],
                     warmup=[_episode_dict(e) for e in warmup])


def _episode_dict(e: Episode) -> dict[str, Any]:
    return {"actor_id": e.actor_id, "signal_class": e.signal_class, "severity": e.severity,
            "first_day": e.first_day.isoformat()}


# --- real histories ----------------------------------------------------------------------------

def _event_actor_day(event: Any) -> tuple[str, date]:
    if isinstance(event, Mapping):
        ts = event.get("occurred_at") if event.get("timestamp_utc") is None \
            else event.get("timestamp_utc")
        actor = event.get("actor_id")
    else:
        ts, actor = getattr(event, "timestamp_utc", None), getattr(event, "actor_id", None)
        if ts is None and getattr(event, "occurred_at", None) is not None:
            ts = event.occurred_at
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    if not isinstance(ts, datetime):
        raise TypeError(f"event without a timestamp: {event!r}")
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return str(actor), ts.date()


def active_actor_months(events: Iterable[Any],
                        min_days: int = ACTIVE_MONTH_MIN_DAYS) -> dict[tuple[str, str], int]:
    """(actor, 'YYYY-MM') -> distinct UTC days with events, for months with >= ``min_days``."""
    days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for ev in events:
        actor, day = _event_actor_day(ev)
        days[(actor, f"{day.year:04d}-{day.month:02d}")].add(day)
    return {k: len(v) for k, v in days.items() if len(v) >= min_days}


def real_history_report(signals: Iterable[Any], events: Sequence[Any], *,
                        actor_of: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The alert rate of a replayed real history (definitions in the module docstring).

    ``events``: ``BehaviouralEvent`` objects or envelope dicts (``actor_id``,
    ``occurred_at``). Returns ``{"events", "actors", "active_actor_months",
    "signals_by_class", "warn_or_higher", "warn_or_higher_per_active_actor_month",
    "warn_or_higher_by_class", "group_signals_by_class"}`` (actor-scope episodes unless
    named group).
    """
    eps = episodes(signals, actor_of)
    actor_eps = [e for e in eps if e.actor_scope == "actor"]
    warn = [e for e in actor_eps if SEVERITY_RANK.get(e.severity, 0) >= SEVERITY_RANK["WARN"]]
    months = active_actor_months(events)
    actors = {_event_actor_day(ev)[0] for ev in events}
    return {
        "events": len(events),
        "actors": len(actors),
        "active_actor_months": len(months),
        "signals_by_class": dict(sorted(Counter(e.signal_class for e in actor_eps).items())),
        "warn_or_higher": len(warn),
        "warn_or_higher_per_active_actor_month": round(len(warn) / len(months), 4)
        if months else 0.0,
        "warn_or_higher_by_class": dict(sorted(Counter(e.signal_class for e in warn).items())),
        "group_signals_by_class": dict(sorted(Counter(
            f"{e.actor_scope}:{e.signal_class}" for e in eps
            if e.actor_scope != "actor").items())),
    }
