"""The IAM client's pieces that need no server (SPEC §7): how long an answer may serve, the
process-local cache, and who the caller is once IAM has vouched for a token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt

from ubi.devservers.iam import scope_of
from ubi.integrations.iam import (
    MAX_CACHE_SECONDS,
    MemoryCache,
    Verdict,
    cache_until,
    parse_valid_until,
    token_key,
)
from ubi.web.auth import principal_from_iam
from ubi.web.errors import DependencyUnavailable

NOW = datetime(2026, 6, 17, 12, 0, tzinfo=UTC)


def unsigned(**claims: object) -> str:
    """A JWT whose signature nobody checks here (IAM is taken to have vouched for it)."""
    return jwt.encode(claims, "some-secret-that-is-long-enough-0123456789", algorithm="HS256")


def test_an_answer_serves_until_valid_until_but_never_past_60_seconds() -> None:
    assert cache_until(NOW + timedelta(seconds=20), NOW) == NOW + timedelta(seconds=20)
    assert cache_until(NOW + timedelta(hours=1), NOW) == NOW + timedelta(
        seconds=MAX_CACHE_SECONDS)
    assert cache_until(NOW, NOW) is None  # already over: not cached
    assert cache_until(NOW - timedelta(seconds=1), NOW) is None
    assert cache_until(None, NOW) is None


def test_valid_until_is_read_as_iso_8601_or_epoch_seconds() -> None:
    assert parse_valid_until("2026-06-17T12:01:00Z") == NOW + timedelta(minutes=1)
    assert parse_valid_until("2026-06-17T12:01:00+00:00") == NOW + timedelta(minutes=1)
    assert parse_valid_until("2026-06-17T12:01:00") == NOW + timedelta(minutes=1)  # UTC
    assert parse_valid_until(NOW.timestamp() + 60) == NOW + timedelta(minutes=1)
    bad: object
    for bad in (None, "", "tomorrow", True, [], {}):
        assert parse_valid_until(bad) is None


def test_the_memory_cache_forgets_an_answer_when_it_expires() -> None:
    cache = MemoryCache()
    verdict = Verdict("acme:ann", ("ubi:read:team",), NOW + timedelta(seconds=30))
    key = token_key("a.b.c")
    assert len(key) == 64 and "a.b.c" not in key
    assert cache.get(key, NOW) is None
    cache.put(key, verdict, NOW)
    assert cache.get(key, NOW + timedelta(seconds=29)) == verdict
    assert cache.get(key, NOW + timedelta(seconds=30)) is None
    assert cache.get(key, NOW) is None  # dropped for good


def test_the_memory_cache_prunes_expired_answers_when_it_grows() -> None:
    cache = MemoryCache()
    cache.PRUNE_AT = 3
    for i in range(3):
        cache.put(f"old{i}", Verdict("s", (), NOW + timedelta(seconds=1)), NOW)
    later = NOW + timedelta(seconds=5)
    cache.put("new", Verdict("s", (), later + timedelta(seconds=30)), later)
    assert set(cache._verdicts) == {"new"}


def test_hold_off_only_grows_and_ends_on_time() -> None:
    cache = MemoryCache()
    assert cache.hold_off_until(NOW) is None
    cache.hold_off(NOW + timedelta(seconds=30), NOW)
    cache.hold_off(NOW + timedelta(seconds=10), NOW)  # a shorter wait does not shorten it
    assert cache.hold_off_until(NOW) == NOW + timedelta(seconds=30)
    assert cache.hold_off_until(NOW + timedelta(seconds=30)) is None


def test_verdicts_round_trip_through_json() -> None:
    verdict = Verdict("u@acme", ("a", "b"), NOW)
    assert Verdict.from_json(verdict.to_json()) == verdict


def test_the_tenant_comes_from_the_tenant_id_claim_first() -> None:
    token = unsigned(sub="beta:bob", tenant_id="acme")
    assert principal_from_iam(token, "beta:bob", []).tenant_id == "acme"


def test_the_tenant_comes_from_iams_subject_otherwise() -> None:
    assert principal_from_iam(unsigned(sub="x"), "acme:ann", []).tenant_id == "acme"
    assert principal_from_iam(unsigned(sub="x"), "ann@acme", []).tenant_id == "acme"
    assert principal_from_iam(unsigned(sub="x"), "ann", []).tenant_id is None
    # Not a JWT at all (IAM may vouch for opaque tokens): IAM's subject still names it.
    assert principal_from_iam("opaque-token", "acme:svc", []).tenant_id == "acme"
    assert principal_from_iam("opaque-token", "svc", []).tenant_id is None


def test_roles_are_iams_scope_not_the_tokens_claims() -> None:
    token = unsigned(sub="acme:ann", roles=["admin"], scope="product_ops")
    principal = principal_from_iam(token, "acme:ann", ["ubi:read:team", "ubi:read:actor"])
    assert principal.sub == "acme:ann"
    assert principal.roles == frozenset({"ubi:read:team", "ubi:read:actor"})
    assert not principal.privileged


def test_the_stand_in_grants_the_tokens_scope_and_roles() -> None:
    assert scope_of({"scope": "a b", "roles": ["b", "c", 3]}) == ["a", "b", "c"]
    assert scope_of({"scope": ["a"], "roles": "b"}) == ["a", "b"]
    assert scope_of({}) == []


def test_a_dependency_names_how_long_to_wait() -> None:
    assert DependencyUnavailable("iam").headers["Retry-After"] == "5"
    assert DependencyUnavailable("iam", retry_after=29.2).headers["Retry-After"] == "30"
    assert DependencyUnavailable("iam", retry_after=0).headers["Retry-After"] == "1"
