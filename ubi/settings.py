"""Every environment variable UBI reads, typed, with its default, in one place.

Nothing else in the project reads ``os.environ``. ``load_settings()`` builds an immutable
``Settings`` from an environment mapping; ``get_settings()`` caches the one built from the
process environment.

Embedded default: with no ``DATABASE_URL`` the store is SQLite under ``UBI_DATA_DIR``; with no
``CELERY_BROKER_URL`` tasks run in-process (eager) on kombu's memory transport, and with no
``REDIS_URL`` locks and caches are in-process. Secrets that production must provide are then
generated once per data directory, so ``ubi demo`` needs no servers and no setup.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any


class SettingsError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    help: str
    default: str = ""


#: The documented variables (README's configuration table is checked against this list).
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("DATABASE_URL", "SQLAlchemy URL (`postgresql+psycopg://...`)",
           "embedded SQLite under `UBI_DATA_DIR`"),
    EnvVar("CELERY_BROKER_URL", "broker (`amqp://guest:guest@127.0.0.1:5672//`)",
           "in-process (embedded, tasks run eagerly)"),
    EnvVar("CELERY_RESULT_BACKEND", "Celery result backend", "`REDIS_URL`, else none"),
    EnvVar("REDIS_URL", "caches and locks (`redis://127.0.0.1:6379/0`)", "in-process (embedded)"),
    EnvVar("UBI_DATA_DIR", "where the embedded default keeps its files", "`./.ubi`"),
    EnvVar("UBI_JWT_SECRET", "HS256 secret for development tokens",
           "generated per data dir in embedded mode"),
    EnvVar("UBI_JWT_PUBLIC_KEY", "PEM public key (or path to one) for RS256/ES256 tokens", ""),
    EnvVar("UBI_JWT_JWKS_FILE", "path to a JWKS file of RS256/ES256 keys (selected by `kid`)", ""),
    EnvVar("UBI_JWT_AUDIENCE", "required `aud` claim", "`ubi`"),
    EnvVar("UBI_JWT_ISSUER", "required `iss` claim", "`ubi-dev`"),
    EnvVar("UBI_IAM_URL", "platform IAM for remote token verification", "unset = local only"),
    EnvVar("UBI_ERIS_URL", "evidence receipt service", "unset = receipts kept in the outbox"),
    EnvVar("UBI_GOVERNANCE_URL", "data governance (retention decisions)",
           "unset = tenant `retention_days`"),
    EnvVar("UBI_PSEUDONYM_SECRET", "secret the per-tenant pseudonym keys derive from",
           "generated per data dir in embedded mode; required otherwise"),
    EnvVar("UBI_RECEIPT_SIGNING_KEY", "Ed25519 private key (PEM or base64 raw) for receipts",
           "generated per data dir in embedded mode; required otherwise"),
    EnvVar("UBI_RECEIPT_RETIRED_PUBLIC_KEYS", "public keys (base64 raw, comma-separated) of "
           "retired receipt signing keys, still served by `GET /receipts/public-key` until "
           "their receipts expire", "none"),
    EnvVar("UBI_MAX_BATCH", "largest accepted batch", "5000"),
    EnvVar("UBI_METRICS_DIR", "multiprocess metrics: one subdirectory per process group (web and "
           "each worker group), never shared between containers; the web's metrics page "
           "merges them all", "`UBI_DATA_DIR/metrics`"),
    EnvVar("PROMETHEUS_MULTIPROC_DIR", "multiprocess metrics directory of this process group",
           "set by the process start (`UBI_METRICS_DIR/<group>`)"),
    EnvVar("UBI_QUEUE_PREFIX", "prefix for queue and exchange names", "empty"),
    EnvVar("UBI_LOG_LEVEL", "log level", "`INFO`"),
    EnvVar("UBI_LOG_FORMAT", "`json` or `text`", "`json`"),
    EnvVar("UBI_HTTP_TIMEOUT", "seconds for calls to outside services", "5"),
    EnvVar("UBI_DB_POOL_SIZE", "PostgreSQL connections each process keeps open", "5"),
    EnvVar("UBI_DB_MAX_OVERFLOW", "connections a process may open beyond its pool when busy",
           "10"),
    EnvVar("UBI_BREAKER_FAIL_MAX", "consecutive failures of an outside service (ERIS) that "
           "open its circuit breaker", "5"),
    EnvVar("UBI_BREAKER_RESET_SECONDS", "seconds an open breaker waits before one probe call",
           "30"),
    EnvVar("UBI_BROKER_CONNECT_TIMEOUT", "seconds before the broker counts as down: "
           "connecting, waiting for a task publish's confirm, or sending to it", "3"),
    EnvVar("UBI_TASK_RETRY_WINDOW", "seconds a task retries transient errors (a database, "
           "broker or Redis briefly unreachable) before it is dead-lettered", "900"),
    EnvVar("UBI_GC_THRESHOLD", "allocations between young garbage collections in service "
           "processes (`0` = Python's 700)", "100000"),
    EnvVar("UBI_DEV_MODE", "allow development secrets outside the embedded default", "`0`"),
    EnvVar("UBI_CLOCK_FILE", "development and tests only (needs `UBI_DEV_MODE=1`): a file "
           "holding the time every UBI process reads as now (`ubi clock`)",
           "unset = the system clock"),
    EnvVar("UBI_RATE_LIMIT_ENABLED", "rate limits of the API (`0` turns them off)", "`1`"),
    EnvVar("UBI_RATE_LIMIT_INGEST_TENANT", "`POST /events` requests a tenant may make (`N/second`, "
           "`N/minute`...; several joined by `;`)", "`500/second`"),
    EnvVar("UBI_RATE_LIMIT_INGEST_TOKEN", "`POST /events` requests one token may make",
           "`250/second`"),
    EnvVar("UBI_RATE_LIMIT_READ_TENANT", "requests to every other limited route (reads, batch "
           "status, config, feedback, privacy) a tenant may make",
           "`200/second`"),
    EnvVar("UBI_RATE_LIMIT_READ_TOKEN", "the same, per token", "`100/second`"),
    EnvVar("PORT", "HTTP port of `ubi devserver web` and gunicorn in the Procfile", "8000"),
)


#: Default rate limits. Ingestion: far above what the benchmarks send (about 20 batches of
#: 1,000 events a second over four tenants), low enough to stop a client that loops on tiny
#: batches; a token gets half its tenant's budget, so one runaway producer leaves room for the
#: tenant's others.
RATE_LIMIT_INGEST_TENANT = "500/second"
RATE_LIMIT_INGEST_TOKEN = "250/second"
RATE_LIMIT_READ_TENANT = "200/second"
RATE_LIMIT_READ_TOKEN = "100/second"


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. Use ``load_settings`` to build one."""

    database_url: str
    broker_url: str
    result_backend: str | None
    redis_url: str | None
    data_dir: Path
    jwt_secret: str | None
    jwt_public_key: str | None
    jwt_jwks_file: str | None
    jwt_audience: str
    jwt_issuer: str
    iam_url: str | None
    eris_url: str | None
    governance_url: str | None
    pseudonym_secret: bytes
    receipt_signing_key: str
    max_batch: int
    #: Set by a process group's start (``observability.multiproc``): this process records
    #: its metrics there.
    prometheus_multiproc_dir: str | None
    queue_prefix: str
    log_level: str
    #: False when UBI_LOG_LEVEL is unset (``log_level`` is then the default; the demo, which
    #: talks to a person, picks a quieter one).
    log_level_set: bool
    log_format: str
    http_timeout: float
    broker_connect_timeout: float
    port: int
    #: Public halves (base64 of the raw 32 bytes) of retired receipt signing keys: served
    #: next to the current key so receipts they signed still verify (SPEC §13).
    receipt_retired_public_keys: tuple[str, ...] = ()
    #: Circuit breakers of outside services (``ubi/integrations/breakers.py``): consecutive
    #: failures that open one, and seconds it stays open before a single probe call.
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 30.0
    #: Per-process pool (every gunicorn worker and Celery child has its own); their sum over
    #: a deployment is its connection budget (``ubi/store/connections.py``).
    db_pool_size: int = 5
    db_max_overflow: int = 10
    #: Seconds over which a task retries transient errors, with backoff (``ubi/tasks/base``).
    task_retry_window: float = 900.0
    #: Allocations between two young-generation garbage collections in service processes
    #: (``gc.set_threshold``); 0 keeps Python's default (700). See ``ubi/runtime.py``.
    gc_threshold: int = 100_000
    #: True when no database was configured (SQLite under the data dir).
    embedded_db: bool = False
    #: True when no broker was configured: tasks run in-process, eagerly.
    embedded_broker: bool = False
    #: The shared clock file of development and tests (``ubi/clock.py``); None in production.
    clock_file: Path | None = None
    #: Request rate limits of the API (``ubi/web/rate_limits.py``): limit strings as the
    #: ``limits`` library parses them ("500/second", "10/second;300/minute"), for ingestion
    #: (``POST /events``) and for every other limited route, per tenant and per token.
    rate_limit_enabled: bool = True
    rate_limit_ingest_tenant: str = RATE_LIMIT_INGEST_TENANT
    rate_limit_ingest_token: str = RATE_LIMIT_INGEST_TOKEN
    rate_limit_read_tenant: str = RATE_LIMIT_READ_TENANT
    rate_limit_read_token: str = RATE_LIMIT_READ_TOKEN
    #: Parent of every process group's metrics directory (``observability.multiproc``).
    metrics_dir: Path = Path(".ubi/metrics")
    #: Where spans go over OTLP/HTTP (``ubi/observability/tracing.py``); None = tracing off.
    #: The OpenTelemetry SDK reads its own ``OTEL_*`` variables; this one only says whether.
    otel_endpoint: str | None = None

    @property
    def embedded(self) -> bool:
        return self.embedded_broker

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    def queue_name(self, name: str) -> str:
        """A queue or exchange name with this deployment's prefix."""
        return f"{self.queue_prefix}{name}"

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def _str(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A rate limit string, checked here so that a typo stops the process at start-up."""
    from limits import parse_many

    raw = _str(env, name) or default
    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise SettingsError(f"{name} must be a rate limit such as 500/second or "
                            f"10/second;300/minute (UBI_RATE_LIMIT_ENABLED=0 turns the limits "
                            f"off), got {raw!r}")
    return raw


def _generated_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets generated once per embedded data directory (development only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = data_dir / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    values = {
        "UBI_PSEUDONYM_SECRET": secrets.token_hex(32),
        "UBI_JWT_SECRET": secrets.token_hex(32),
        "UBI_RECEIPT_SIGNING_KEY": base64.b64encode(key).decode(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    return values


def load_settings(environ: Mapping[str, str] | None = None, *,
                  require_secrets: bool = True) -> Settings:
    """Build settings from an environment mapping (default: the process environment).
    ``require_secrets`` False: the pseudonym secret and the signing key may be missing (they
    are then empty), for commands that use neither (``without_secrets``)."""
    env = dict(os.environ if environ is None else environ)
    data_dir = Path(_str(env, "UBI_DATA_DIR") or ".ubi").expanduser().resolve()
    database_url = _str(env, "DATABASE_URL")
    broker_url = _str(env, "CELERY_BROKER_URL")
    redis_url = _str(env, "REDIS_URL")
    embedded_db = database_url is None
    embedded_broker = broker_url is None
    dev_mode = _dev_mode(env)

    generated: dict[str, str] = {}
    needs = [n for n in ("UBI_PSEUDONYM_SECRET", "UBI_RECEIPT_SIGNING_KEY") if not _str(env, n)]
    jwt_configured = any(
        _str(env, n) for n in ("UBI_JWT_SECRET", "UBI_JWT_PUBLIC_KEY", "UBI_JWT_JWKS_FILE"))
    if needs or not jwt_configured:
        if embedded_broker or dev_mode:
            generated = _generated_secrets(data_dir)
        elif needs and require_secrets:
            raise SettingsError(
                f"{', '.join(needs)} must be set outside the embedded default "
                "(generate a signing key with `ubi keys generate`)")

    def secret(name: str) -> str | None:
        return _str(env, name) or generated.get(name)

    jwt_secret = _str(env, "UBI_JWT_SECRET")
    if not jwt_configured:
        jwt_secret = generated.get("UBI_JWT_SECRET")

    multiproc = _str(env, "PROMETHEUS_MULTIPROC_DIR") or _str(env, "prometheus_multiproc_dir")
    log_format = (_str(env, "UBI_LOG_FORMAT") or "json").lower()
    if log_format not in {"json", "text"}:
        raise SettingsError(f"UBI_LOG_FORMAT must be json or text, got {log_format!r}")
    max_batch = _int(env, "UBI_MAX_BATCH", 5000)
    if max_batch < 1:
        raise SettingsError("UBI_MAX_BATCH must be at least 1")
    task_retry_window = _float(env, "UBI_TASK_RETRY_WINDOW", 900.0)
    if task_retry_window < 0:
        raise SettingsError("UBI_TASK_RETRY_WINDOW must be 0 (no retries) or more seconds")
    gc_threshold = _int(env, "UBI_GC_THRESHOLD", 100_000)
    if gc_threshold < 0:
        raise SettingsError("UBI_GC_THRESHOLD must be 0 (Python's default) or more")
    rate_limit_enabled = _bool(env, "UBI_RATE_LIMIT_ENABLED", True)
    db_pool_size = _int(env, "UBI_DB_POOL_SIZE", 5)
    db_max_overflow = _int(env, "UBI_DB_MAX_OVERFLOW", 10)
    if db_pool_size < 1 or db_max_overflow < 0:
        raise SettingsError("UBI_DB_POOL_SIZE must be at least 1 and UBI_DB_MAX_OVERFLOW at "
                            "least 0")
    retired_keys = tuple(k.strip() for k in (_str(env, "UBI_RECEIPT_RETIRED_PUBLIC_KEYS")
                                             or "").split(",") if k.strip())
    for key in retired_keys:
        try:
            valid = len(base64.b64decode(key, validate=True)) == 32
        except ValueError:
            valid = False
        if not valid:
            raise SettingsError("UBI_RECEIPT_RETIRED_PUBLIC_KEYS must hold base64 raw Ed25519 "
                                f"public keys (32 bytes), comma-separated; got {key!r}")
    breaker_fail_max = _int(env, "UBI_BREAKER_FAIL_MAX", 5)
    if breaker_fail_max < 1:
        raise SettingsError("UBI_BREAKER_FAIL_MAX must be at least 1")
    breaker_reset_seconds = _float(env, "UBI_BREAKER_RESET_SECONDS", 30.0)
    if breaker_reset_seconds <= 0:
        raise SettingsError("UBI_BREAKER_RESET_SECONDS must be more than 0")

    return Settings(
        database_url=database_url or f"sqlite:///{data_dir / 'ubi.sqlite3'}",
        broker_url=broker_url or "memory://localhost/",
        result_backend=_str(env, "CELERY_RESULT_BACKEND") or redis_url,
        redis_url=redis_url,
        data_dir=data_dir,
        jwt_secret=jwt_secret,
        jwt_public_key=_str(env, "UBI_JWT_PUBLIC_KEY"),
        jwt_jwks_file=_str(env, "UBI_JWT_JWKS_FILE"),
        jwt_audience=_str(env, "UBI_JWT_AUDIENCE") or "ubi",
        jwt_issuer=_str(env, "UBI_JWT_ISSUER") or "ubi-dev",
        iam_url=(_str(env, "UBI_IAM_URL") or "").rstrip("/") or None,
        eris_url=(_str(env, "UBI_ERIS_URL") or "").rstrip("/") or None,
        governance_url=(_str(env, "UBI_GOVERNANCE_URL") or "").rstrip("/") or None,
        pseudonym_secret=(secret("UBI_PSEUDONYM_SECRET") or "").encode(),
        receipt_signing_key=secret("UBI_RECEIPT_SIGNING_KEY") or "",
        max_batch=max_batch,
        prometheus_multiproc_dir=multiproc,
        metrics_dir=Path(_str(env, "UBI_METRICS_DIR") or data_dir / "metrics").expanduser()
        .resolve(),
        queue_prefix=_str(env, "UBI_QUEUE_PREFIX") or "",
        log_level=(_str(env, "UBI_LOG_LEVEL") or "INFO").upper(),
        log_level_set=_str(env, "UBI_LOG_LEVEL") is not None,
        log_format=log_format,
        http_timeout=_float(env, "UBI_HTTP_TIMEOUT", 5.0),
        db_pool_size=db_pool_size, db_max_overflow=db_max_overflow,
        broker_connect_timeout=_float(env, "UBI_BROKER_CONNECT_TIMEOUT", 3.0),
        port=_int(env, "PORT", 8000),
        receipt_retired_public_keys=retired_keys,
        breaker_fail_max=breaker_fail_max,
        breaker_reset_seconds=breaker_reset_seconds,
        task_retry_window=task_retry_window,
        gc_threshold=gc_threshold,
        embedded_db=embedded_db,
        embedded_broker=embedded_broker,
        clock_file=_clock_file(env),
        rate_limit_enabled=rate_limit_enabled,
        rate_limit_ingest_tenant=_rate_limit(env, "UBI_RATE_LIMIT_INGEST_TENANT",
                                             RATE_LIMIT_INGEST_TENANT),
        rate_limit_ingest_token=_rate_limit(env, "UBI_RATE_LIMIT_INGEST_TOKEN",
                                            RATE_LIMIT_INGEST_TOKEN),
        rate_limit_read_tenant=_rate_limit(env, "UBI_RATE_LIMIT_READ_TENANT",
                                           RATE_LIMIT_READ_TENANT),
        rate_limit_read_token=_rate_limit(env, "UBI_RATE_LIMIT_READ_TOKEN",
                                          RATE_LIMIT_READ_TOKEN),
        otel_endpoint=None if _bool(env, "OTEL_SDK_DISABLED", False) else (
            _str(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or _str(env, "OTEL_EXPORTER_OTLP_ENDPOINT")),
    )


def _dev_mode(env: Mapping[str, str]) -> bool:
    return (_str(env, "UBI_DEV_MODE") or "0").lower() in {"1", "true", "yes"}


def _clock_file(env: Mapping[str, str]) -> Path | None:
    raw = _str(env, "UBI_CLOCK_FILE")
    if raw is None:
        return None
    if not _dev_mode(env):
        # Time that anyone with write access to a file can move has no place in production.
        raise SettingsError("UBI_CLOCK_FILE is for development and tests only: "
                            "set UBI_DEV_MODE=1 as well, or unset it")
    return Path(raw).expanduser().resolve()


@lru_cache(maxsize=1)
def clock_file() -> Path | None:
    """This process's shared clock file (read once; ``ubi/clock.py`` asks on every call, so this
    does not build the whole settings, which may need secrets the caller does not)."""
    return _clock_file(os.environ)


_secrets_required = True


def without_secrets() -> None:
    """This process uses no secret (schema migrations, broker topology): its settings load
    without ``UBI_PSEUDONYM_SECRET`` and ``UBI_RECEIPT_SIGNING_KEY``."""
    global _secrets_required
    _secrets_required = False
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (built once from the environment)."""
    return load_settings(require_secrets=_secrets_required)


def unset_process_env(*names: str) -> None:
    """Remove variables this process would otherwise pass on to its children."""
    for name in names:
        os.environ.pop(name, None)


def set_process_env(name: str, value: str) -> None:
    """Export a variable to child processes (gunicorn/celery children need the metrics dir)."""
    os.environ[name] = value
