"""Tenant config validation (SPEC §10) and the working-hours calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from ubi.analytics.calendar import classify_times, workday_mask
from ubi.analytics.tenant_config import (
    DEFAULT_CONFIG,
    ConfigError,
    TenantConfig,
    config_diff,
    validate_config,
)


def test_empty_document_gives_the_defaults() -> None:
    assert validate_config({}) == DEFAULT_CONFIG


@pytest.mark.parametrize(("document", "path"), [
    ({"nope": 1}, "nope"),
    ({"privacy_settings": {"nope": True}}, "privacy_settings.nope"),
    ({"anomaly_thresholds": {"default": {"warn": 4.0, "critical": 3.0}}},
     "anomaly_thresholds.default.warn"),
    ({"anomaly_thresholds": {"default": {"warn": 2.5, "critical": 3.5}, "flow": {"warn": 5}}},
     "anomaly_thresholds.flow.warn"),
    ({"baseline_algorithm": {"alpha": 0}}, "baseline_algorithm.alpha"),
    ({"baseline_algorithm": {"alpha": 1.5}}, "baseline_algorithm.alpha"),
    ({"baseline_algorithm": {"alpha": "0.1"}}, "baseline_algorithm.alpha"),
    ({"working_hours": {"start": "9am"}}, "working_hours.start"),
    ({"working_hours": {"timezone": "Mars/Olympus"}}, "working_hours.timezone"),
    ({"enabled_event_categories": ["file_edited", "teleported"]}, "enabled_event_categories[1]"),
    ({"event_type_mapping": {"push": "pushed_hard"}}, "event_type_mapping.push"),
    ({"disabled_signal_classes": ["made_up"]}, "disabled_signal_classes"),
    ({"holidays": ["2026-13-01"]}, "holidays[0]"),
    ({"stale_after_seconds": True}, "stale_after_seconds"),
    ({"privacy_settings": {"pseudonymise_actor_ids": False}},
     "privacy_settings.pseudonymise_actor_ids"),
])
def test_invalid_documents_name_the_field(document: dict, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(document)
    assert path in info.value.errors, info.value.errors


def test_partial_documents_merge_over_defaults_and_diff_names_leaves() -> None:
    cfg = validate_config({"anomaly_thresholds": {"default": {"warn": 2.5, "critical": 3.5},
                                                  "flow": {"warn": 3.0}},
                           "working_hours": {"timezone": "Europe/Berlin"}})
    tc = TenantConfig(cfg)
    assert tc.thresholds("flow") == (3.0, 3.5)
    assert tc.thresholds("activity") == (2.5, 3.5)
    assert cfg["working_hours"]["start"] == "09:00"
    diff = config_diff(DEFAULT_CONFIG, cfg)
    assert {d["path"] for d in diff} == {"anomaly_thresholds.flow",
                                         "working_hours.timezone"}


def _epoch(year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def test_working_hours_in_the_events_own_offset_and_in_a_tenant_timezone() -> None:
    tc = TenantConfig.default()
    # Tuesday 2026-11-24: 07:30 UTC is 09:30 at +02:00 (working) and 07:30 at +00:00 (before).
    ts = np.array([_epoch(2026, 11, 24, 7, 30)] * 2)
    after, late, _ = classify_times(ts, np.array([120, 0]), tc)
    assert after.tolist() == [False, True] and late.tolist() == [False, False]
    # 23:30 UTC on a Saturday: after hours and late night; Sunday already at +01:00.
    after, late, local_day = classify_times(np.array([_epoch(2026, 11, 28, 23, 30)] * 2),
                                            np.array([0, 60]), tc)
    assert after.tolist() == [True, True] and late.tolist() == [True, True]
    assert (local_day - local_day[0]).tolist() == [0, 1]
    # A tenant timezone overrides the offset (New York is UTC-5 in November).
    ny = TenantConfig(validate_config({"working_hours": {"timezone": "America/New_York"}}))
    after, _, _ = classify_times(np.array([_epoch(2026, 11, 24, 15, 0)]), np.array([600]), ny)
    assert after.tolist() == [False]  # 10:00 in New York, whatever the event said


def test_holidays_are_not_workdays() -> None:
    tc = TenantConfig(validate_config({"holidays": ["2026-12-24"]}))
    from datetime import date

    from ubi.analytics.calendar import day_number

    days = np.array([day_number(date(2026, 12, d)) for d in (23, 24, 26)])
    assert workday_mask(days, tc).tolist() == [True, False, False]
