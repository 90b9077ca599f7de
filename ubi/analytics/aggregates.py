"""Team, cohort and tenant aggregates and peer groups (SPEC §5.5, §8 k-anonymity).

A group aggregate is itself a ``DailyActivity`` whose subjects are groups, so the same feature,
baseline and detection code runs on every scope:

- counters and focus time are summed over the members,
- hour masks and local-day masks are OR-ed (an hour is active for the group if any member
  was active in it),
- interactions and work items are re-indexed to the group, so ``distinct_collaborators`` of a
  group counts the distinct counterparts of all its members together.

A team aggregate exists on day ``d`` for window ``w`` only if at least ``min_team_size`` distinct
member actors had events in that window; the same guard applies to cohorts (a cohort of two
agents would expose them). The tenant aggregate always exists: it is the tenant's own total,
and the members of small teams fold into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ubi.analytics.activity import COUNTER_INDEX, DailyActivity, Interactions, WorkItems
from ubi.analytics.features import rolling_sum
from ubi.analytics.taxonomy import ACTOR_TYPES, WINDOWS
from ubi.analytics.tenant_config import TenantConfig


@dataclass
class GroupAggregate:
    """Groups of one scope: their activity and which member actors belong to which group."""

    scope: str  # "team" | "cohort" | "tenant"
    activity: DailyActivity
    #: int64 [S_actors], index of each actor's group, -1 for none (actor without a team).
    member_group: np.ndarray

    @property
    def group_ids(self) -> list[str]:
        return self.activity.subject_ids


def aggregate_activity(activity: DailyActivity, member_group: np.ndarray,
                       group_ids: Sequence[str], *, actor_types: Sequence[str] | None = None,
                       team_ids: Sequence[str | None] | None = None) -> DailyActivity:
    """Sum the rollups of the actors into groups; ``member_group[s]`` = group of actor s or -1.

    Counters and focus are summed, hour masks OR-ed, interactions / work items re-indexed (their
    duplicates per group and day are left in place: the feature code de-duplicates distinct
    counts and sums counts). The after-hours and late-night counters, and the events they are
    a share of (``after_hours_events``), are the human members' only: agents run around the
    clock by design, and a team's working hours are its people's (SPEC §5.5).
    """
    n_g, n_d = len(group_ids), activity.n_days
    member_group = np.asarray(member_group, dtype=np.int64)
    counters = np.zeros((n_g, n_d, activity.counters.shape[2]))
    hours = np.zeros((n_g, n_d), dtype=np.int64)
    focus_m = np.zeros((n_g, n_d))
    focus_n = np.zeros((n_g, n_d))
    local = np.zeros((n_g, n_d), dtype=np.int64)
    members = np.flatnonzero(member_group >= 0)
    if members.size and n_g:
        # Sort members by group and reduce each contiguous block: a handful of array calls.
        order = members[np.argsort(member_group[members], kind="stable")]
        groups_sorted = member_group[order]
        starts = np.flatnonzero(np.r_[True, groups_sorted[1:] != groups_sorted[:-1]])
        present = groups_sorted[starts]
        counters[present] = np.add.reduceat(activity.counters[order], starts, axis=0)
        hours[present] = np.bitwise_or.reduceat(activity.hours_mask[order], starts, axis=0)
        focus_m[present] = np.add.reduceat(activity.focus_minutes[order], starts, axis=0)
        focus_n[present] = np.add.reduceat(activity.focus_sessions[order], starts, axis=0)
        if activity.local_days is not None:
            local[present] = np.bitwise_or.reduceat(activity.local_days[order], starts, axis=0)
    hours_cols = [COUNTER_INDEX["after_hours"], COUNTER_INDEX["late_night"]]
    human = np.array([t == "human" for t in activity.actor_types], dtype=bool)
    hours_events = np.zeros((n_g, n_d))
    human_hours = np.zeros((n_g, n_d, len(hours_cols)))
    humans = members[human[members]] if members.size else members
    if humans.size and n_g:
        g = member_group[humans]
        np.add.at(human_hours, g, activity.counters[humans][:, :, hours_cols])
        np.add.at(hours_events, g, activity.counter("event_count")[humans])
    counters[:, :, hours_cols] = human_hours

    def reindex_inter(src: Interactions) -> Interactions:
        g = member_group[src.subject] if src.subject.size else src.subject
        keep = g >= 0
        return Interactions(g[keep], src.day[keep], src.counterpart[keep], src.count[keep],
                            src.cross_team[keep])

    def reindex_items(src: WorkItems) -> WorkItems:
        g = member_group[src.subject] if src.subject.size else src.subject
        keep = g >= 0
        return WorkItems(g[keep], src.day[keep], src.item[keep], src.llm_requests[keep])

    return DailyActivity(
        subject_ids=list(group_ids),
        actor_types=list(actor_types) if actor_types is not None else ["mixed"] * n_g,
        team_ids=list(team_ids) if team_ids is not None else [None] * n_g,
        start_day=activity.start_day, counters=counters, hours_mask=hours,
        focus_minutes=focus_m, focus_sessions=focus_n,
        interactions=reindex_inter(activity.interactions),
        work_items=reindex_items(activity.work_items), after_hours_events=hours_events,
        local_days=local if activity.local_days is not None else None)


def team_aggregate(activity: DailyActivity) -> GroupAggregate:
    """One group per distinct team id (sorted); actors without a team belong to none."""
    teams = sorted({t for t in activity.team_ids if t is not None})
    index = {t: i for i, t in enumerate(teams)}
    member = np.array([index[t] if t is not None else -1 for t in activity.team_ids],
                      dtype=np.int64)
    return GroupAggregate("team", aggregate_activity(activity, member, teams, team_ids=teams),
                          member)


def cohort_aggregate(activity: DailyActivity) -> GroupAggregate:
    """One group per actor type present (humans, ai_agents and services apart)."""
    present = [t for t in ACTOR_TYPES if t in set(activity.actor_types)]
    present += sorted(set(activity.actor_types) - set(ACTOR_TYPES))
    index = {t: i for i, t in enumerate(present)}
    member = np.array([index[t] for t in activity.actor_types], dtype=np.int64)
    return GroupAggregate("cohort", aggregate_activity(activity, member, present,
                                                       actor_types=present), member)


def tenant_aggregate(activity: DailyActivity, tenant_id: str) -> GroupAggregate:
    """A single group holding every actor of the tenant."""
    member = np.zeros(activity.n_subjects, dtype=np.int64)
    return GroupAggregate("tenant", aggregate_activity(activity, member, [tenant_id]), member)


def active_members_in_window(activity: DailyActivity, member_group: np.ndarray, n_groups: int,
                             window: str) -> np.ndarray:
    """[G, D] number of distinct member actors with at least one event in the window."""
    w = WINDOWS[window]
    active = rolling_sum((activity.counter("event_count") > 0).astype(float), w) > 0
    out = np.zeros((n_groups, activity.n_days))
    member_group = np.asarray(member_group, dtype=np.int64)
    members = member_group >= 0
    if members.any() and n_groups:
        np.add.at(out, member_group[members], active[members].astype(float))
    return out


def eligible_groups(activity: DailyActivity, aggregate: GroupAggregate, window: str,
                    config: TenantConfig) -> np.ndarray:
    """bool [G, D]: the group's aggregate exists for ``window`` ending on each day.

    Teams and cohorts need at least ``min_team_size`` distinct active members in the window;
    the tenant aggregate always exists.
    """
    n_g = len(aggregate.group_ids)
    if aggregate.scope == "tenant":
        return np.ones((n_g, activity.n_days), dtype=bool)
    counts = active_members_in_window(activity, aggregate.member_group, n_g, window)
    return counts >= config.min_team_size


@dataclass
class PeerGroups:
    """Per actor, the group its percentiles are taken over (SPEC §5.5).

    ``labels[g]`` is ``"team:<team_id>"`` or ``"cohort:<actor_type>"``; ``index[s]`` the peer
    group of actor s; ``sizes[g]`` the number of actors in the group.
    """

    labels: list[str]
    index: np.ndarray
    sizes: np.ndarray


def peer_groups(activity: DailyActivity, config: TenantConfig) -> PeerGroups:
    """The actor's team if it has at least ``min_team_size`` actors of the actor's own type,
    else its cohort (the actors of its type in the tenant).

    Peers are of the same actor type, as cohorts are (SPEC §5.2: humans are compared with
    humans, agents with agents): an AI agent working for a team of people is not "above the
    team's p90" of LLM requests because it is an agent, and a team's agents do not dilute its
    people's review percentiles. A team with people and agents thus has one peer group per
    type; a type with fewer than ``min_team_size`` members in the team uses its cohort.
    """
    team_sizes: dict[tuple[str, str], int] = {}
    for t, kind in zip(activity.team_ids, activity.actor_types, strict=True):
        if t is not None:
            team_sizes[(t, kind)] = team_sizes.get((t, kind), 0) + 1
    labels: list[str] = []
    lookup: dict[str, int] = {}
    index = np.empty(activity.n_subjects, dtype=np.int64)
    for s, (team, actor_type) in enumerate(zip(activity.team_ids, activity.actor_types,
                                               strict=True)):
        if team is not None and team_sizes[(team, actor_type)] >= config.min_team_size:
            # Unchanged label for the usual all-human team; typed when agents have their own.
            label = f"team:{team}" if actor_type == "human" else f"team:{team}:{actor_type}"
        else:
            label = f"cohort:{actor_type}"
        if label not in lookup:
            lookup[label] = len(labels)
            labels.append(label)
        index[s] = lookup[label]
    sizes = np.bincount(index, minlength=len(labels)) if labels else np.zeros(0, dtype=np.int64)
    return PeerGroups(labels, index, sizes)


def group_percentile(values: np.ndarray, group: np.ndarray, n_groups: int, q: float,
                     member_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-rank ``q``-th percentile (0..100) of each group's members on each day.

    ``values`` [S, D] (NaN = no value), ``group`` [S]. Returns (percentile [G, D], count [G, D])
    where count is the number of members with a value. The nearest-rank percentile is always a
    member's actual value, so in a group of five the p90 is the top value and nobody is "above"
    it by interpolation alone.
    """
    values = np.array(values, dtype=np.float64)
    if member_mask is not None:
        values[~member_mask] = np.nan
    n_s, n_d = values.shape
    group = np.asarray(group, dtype=np.int64)
    # Sort each day's column by (group, value); NaN sorts after every number within a group.
    vt = values.T  # [D, S]
    gt = np.broadcast_to(group, (n_d, n_s))
    order = np.lexsort((vt, gt), axis=-1)
    sorted_vals = np.take_along_axis(vt, order, axis=1)
    valid = ~np.isnan(values)
    counts = np.zeros((n_groups, n_d), dtype=np.int64)
    np.add.at(counts, group, valid.astype(np.int64))
    sizes = np.bincount(group, minlength=n_groups)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]  # first sorted position of each group
    rank = np.ceil(q / 100.0 * counts).astype(np.int64) - 1
    rank = np.clip(rank, 0, None)
    pos = starts[:, None] + rank  # [G, D]
    pos = np.clip(pos, 0, max(n_s - 1, 0))
    out = np.full((n_groups, n_d), np.nan)
    if n_s:
        picked = np.take_along_axis(sorted_vals, pos.T, axis=1).T
        out = np.where(counts > 0, picked, np.nan)
    return out, counts
