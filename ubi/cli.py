"""``ubi``: the command line of UBI (SPEC §14). Commands stay thin: they call services."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

import click

from ubi.web.auth import PRIVILEGED_ROLES, ROLES


def _one_line(exc: BaseException) -> str | None:
    """What went wrong, and how to fix it, for the errors a command meets in its settings or
    its servers; None for anything else (a bug keeps its traceback)."""
    from ubi.settings import SettingsError

    if isinstance(exc, SettingsError):
        return f"{exc} (the settings are listed in the README)"
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        from ubi.settings import get_settings

        url = sqlalchemy.engine.make_url(get_settings().database_url)
        return (f"the database at {url.render_as_string(hide_password=True)} cannot be used: "
                f"{first} (check DATABASE_URL and that PostgreSQL is running)")
    import kombu.exceptions
    import redis.exceptions

    if isinstance(exc, kombu.exceptions.OperationalError | ConnectionRefusedError):
        return f"the broker cannot be reached: {first} (check CELERY_BROKER_URL and RabbitMQ)"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return f"Redis cannot be reached: {first} (check REDIS_URL and Redis)"
    return None


class _Commands(click.Group):
    """Settings and server errors end a command with one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            line = _one_line(exc)
            if line is None:
                raise
            raise click.ClickException(line) from exc


@click.group(cls=_Commands)
def main() -> None:
    """UBI — User Behaviour Intelligence."""


# --- database --------------------------------------------------------------------------------

@main.group()
def db() -> None:
    """Database schema (Alembic)."""
    from ubi.settings import without_secrets

    without_secrets()  # migrations need the database URL only


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from ubi.services import schema

    schema.upgrade(revision=revision)
    click.echo(f"database at {schema.current_revision()}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (``base`` drops everything)."""
    from ubi.services import schema

    schema.downgrade(revision=revision)
    click.echo(f"database at {schema.current_revision() or 'base'}")


@db.command("current")
def db_current() -> None:
    """Print the applied revision."""
    from ubi.services import schema

    click.echo(schema.current_revision() or "base")


# --- broker ----------------------------------------------------------------------------------

@main.group()
def broker() -> None:
    """RabbitMQ topology."""
    from ubi.settings import without_secrets

    without_secrets()  # the topology needs the broker URL and queue prefix only


@broker.command("declare")
def broker_declare() -> None:
    """Declare exchanges, queues, the dead-letter exchange and queues, and the stream's
    subscriptions (idempotent)."""
    from ubi.integrations.broker import declare_topology
    from ubi.settings import get_settings

    if get_settings().embedded_broker:
        # Tasks run in-process there: no exchanges or queues exist to declare.
        click.echo("the embedded in-process broker needs no topology (set CELERY_BROKER_URL "
                   "to declare one on RabbitMQ)")
        return
    declared = declare_topology()
    click.echo(json.dumps(declared, indent=2))
    if declared.get("subscriptions_error"):  # the deploy step must not pass silently
        raise click.ClickException(declared["subscriptions_error"])


# --- dead-letter queue -----------------------------------------------------------------------

def _dlq() -> Any:
    from ubi.celery_app import app
    from ubi.integrations.dlq import DeadLetterQueue

    app.loader.import_default_modules()  # the task modules: re-drives are checked by name
    known = {name for name in app.tasks if name.startswith("ubi.")}

    def exception_of(task_id: str) -> str | None:
        if not app.conf.result_backend:
            return None
        result = app.AsyncResult(task_id)
        return repr(result.result) if result.failed() else None

    return DeadLetterQueue(known_tasks=known, exception_lookup=exception_of)


@main.group()
def dlq() -> None:
    """Read and re-drive the task dead-letter queue."""


@dlq.command("list")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dlq_list(limit: int, as_json: bool) -> None:
    """Dead-lettered tasks: name, arguments, exception, attempts, first/last failure."""
    from ubi.integrations.dlq import to_json

    letters = _dlq().list(limit=limit)
    if as_json:
        click.echo(to_json(letters))
        return
    if not letters:
        click.echo("the dead-letter queue is empty")
    for d in letters:
        click.echo(f"{d.task_id}  {d.task_name}  attempts={d.attempts} reason={d.reason} "
                   f"queue={d.original_queue} last={d.last_failure} "
                   f"exception={d.exception or '-'}\n    {d.args_summary}")


@dlq.command("show")
@click.argument("task_id")
def dlq_show(task_id: str) -> None:
    """One dead-lettered task in full."""
    letter = _dlq().show(task_id)
    if letter is None:
        raise click.ClickException(f"no dead letter with task id {task_id}")
    click.echo(json.dumps(letter.as_dict(), indent=2, default=str))


@dlq.command("retry")
@click.argument("task_id", required=False)
@click.option("--all", "all_messages", is_flag=True, help="re-drive every dead letter")
def dlq_retry(task_id: str | None, all_messages: bool) -> None:
    """Re-drive a dead letter (or all) to the queue it died in."""
    if not task_id and not all_messages:
        raise click.UsageError("give a TASK_ID or --all")
    done = _dlq().retry(task_id, all_messages=all_messages)
    click.echo(f"re-driven: {len(done)}")


@dlq.command("purge")
@click.confirmation_option(prompt="Drop every dead letter?")
def dlq_purge() -> None:
    """Drop every dead letter."""
    click.echo(f"purged: {_dlq().purge()}")


# --- signal stream ---------------------------------------------------------------------------

@main.group()
def subscriptions() -> None:
    """Named subscriptions of the signal stream (queues bound by filters; SPEC §12)."""


def _values(items: tuple[str, ...]) -> tuple[str, ...]:
    # Each option may repeat and take comma-separated values.
    return tuple(v.strip() for item in items for v in item.split(",") if v.strip())


@subscriptions.command("add")
@click.argument("name")
@click.option("--tenant", "tenants", multiple=True, help="tenant id(s); default any")
@click.option("--scope", "scopes", multiple=True, help="actor, team, cohort, tenant")
@click.option("--dimension", "dimensions", multiple=True)
@click.option("--type", "types", multiple=True, help="risk, opportunity, informational")
@click.option("--class", "classes", multiple=True, help="signal class (rule name)")
@click.option("--min-severity", default="INFO", show_default=True,
              type=click.Choice(["INFO", "WARN", "CRITICAL"]))
@click.option("--overflow", default="park", show_default=True,
              type=click.Choice(["park", "reject"]),
              help="park: a full queue parks its oldest messages in NAME.parking; reject: "
                   "the publish is refused and retried from the outbox (docs/stream.md)")
@click.option("--max-length", default=100_000, show_default=True, type=int)
def subscriptions_add(name: str, tenants: tuple[str, ...], scopes: tuple[str, ...],
                      dimensions: tuple[str, ...], types: tuple[str, ...],
                      classes: tuple[str, ...], min_severity: str, overflow: str,
                      max_length: int) -> None:
    """Add subscription NAME and declare its queue (the queue name carries the prefix)."""
    from ubi.integrations.routing import SubscriptionSpec
    from ubi.models import session_factory
    from ubi.services import subscriptions as subs

    spec = SubscriptionSpec(
        name=name, tenants=_values(tenants), actor_scopes=_values(scopes),
        dimensions=_values(dimensions), signal_types=_values(types),
        signal_classes=_values(classes), min_severity=min_severity, overflow=overflow,
        max_length=max_length)
    with session_factory()() as session:
        try:
            queues = subs.add_subscription(session, spec)
        except subs.SubscriptionError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({**subs.describe(spec), "declared": queues}, indent=2))


@subscriptions.command("list")
@click.option("--json", "as_json", is_flag=True)
def subscriptions_list(as_json: bool) -> None:
    """Subscriptions with their bindings and queue depths."""
    from ubi.integrations.broker import parking_queue_name
    from ubi.models import session_factory
    from ubi.services import subscriptions as subs
    from ubi.settings import get_settings

    settings = get_settings()
    with session_factory()() as session:
        specs = subs.list_subscriptions(session)
    queues = [settings.queue_name(s.name) for s in specs]
    depths = subs.queue_depths(settings, queues + [parking_queue_name(q) for q in queues])
    described = [subs.describe(s, settings, depths) for s in specs]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for d in described:
        parked = f" parked={d['parked']}" if "parked" in d else ""
        click.echo(f"{d['name']}  queue={d['queue']} depth={d['depth']}{parked} "
                   f"overflow={d['overflow']} max={d['max_length']}\n    "
                   f"bindings: {' '.join(d['bindings'][:8])}"
                   f"{' ...' if len(d['bindings']) > 8 else ''}")


@subscriptions.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="also when its queue still holds messages")
def subscriptions_remove(name: str, force: bool) -> None:
    """Remove subscription NAME: its row, queue and parking queue."""
    from ubi.models import session_factory
    from ubi.services import subscriptions as subs

    with session_factory()() as session:
        try:
            dropped = subs.remove_subscription(session, name, force=force)
        except subs.SubscriptionError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {name} ({dropped} messages dropped)")


@main.group()
def stream() -> None:
    """The signal stream."""


@stream.group("dlq")
def stream_dlq() -> None:
    """Dead letters of the stream: ubi.signals.dlq, or a subscription's parking queue."""


def _signal_letters(parking: str | None) -> Any:
    from ubi.integrations.broker import SIGNAL_DLQ, parking_queue_name
    from ubi.integrations.signal_dlq import SignalDeadLetters

    return SignalDeadLetters(queue=parking_queue_name(parking) if parking else SIGNAL_DLQ)


@stream_dlq.command("list")
@click.option("--parking", metavar="SUBSCRIPTION", help="the subscription's parking queue")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def stream_dlq_list(parking: str | None, limit: int, as_json: bool) -> None:
    """Dead-lettered signal messages: message id, tenant, routing key, reason, queue."""
    letters = _signal_letters(parking).list(limit=limit)
    if as_json:
        click.echo(json.dumps([x.as_dict() for x in letters], indent=2))
        return
    if not letters:
        click.echo("no dead letters")
    for x in letters:
        click.echo(f"{x.message_id}  tenant={x.tenant_id} key={x.routing_key} "
                   f"reason={x.reason} queue={x.queue} redrives={x.redrives}")


@stream_dlq.command("retry")
@click.argument("message_id", required=False)
@click.option("--all", "all_messages", is_flag=True, help="re-drive every letter")
@click.option("--parking", metavar="SUBSCRIPTION", help="the subscription's parking queue")
@click.option("--limit", type=int, help="at most this many (e.g. the room left in the queue)")
def stream_dlq_retry(message_id: str | None, all_messages: bool, parking: str | None,
                     limit: int | None) -> None:
    """Re-drive a letter (or all) to the subscription queue it died in, only that one."""
    if not message_id and not all_messages:
        raise click.UsageError("give a MESSAGE_ID or --all")
    done = _signal_letters(parking).retry(message_id, all_messages=all_messages, limit=limit)
    click.echo(f"re-driven: {len(done)}")


# --- keys and tokens -------------------------------------------------------------------------

@main.group()
def keys() -> None:
    """Key material for development."""


@keys.command("generate")
@click.option("--kind", type=click.Choice(["receipt", "jwt-rs256", "jwt-es256"]),
              default="receipt", show_default=True)
def keys_generate(kind: str) -> None:
    """Print a new key pair: Ed25519 for receipts (UBI_RECEIPT_SIGNING_KEY), or an RS256 /
    ES256 pair for tokens (UBI_JWT_PUBLIC_KEY + the private key for ``ubi token --key``)."""
    from ubi.services.keys import generate_jwt_keypair, generate_receipt_key

    if kind == "receipt":
        key = generate_receipt_key()
        click.echo(f"# kid: {key.kid}")
        click.echo("# UBI_RECEIPT_SIGNING_KEY (keep secret):")
        click.echo(key.private_pem)
        click.echo("# public key (verifies the receipts signed with the key above):")
        click.echo(key.public_pem)
    else:
        private_pem, public_pem = generate_jwt_keypair("ES256" if kind == "jwt-es256" else "RS256")
        click.echo("# private key (sign development tokens with `ubi token --key FILE`):")
        click.echo(private_pem)
        click.echo("# UBI_JWT_PUBLIC_KEY:")
        click.echo(public_pem)


@main.command("token")
@click.option("--tenant", "tenant_id", help="tenant the token is bound to")
@click.option("--role", "roles", multiple=True,
              type=click.Choice(sorted((*ROLES, *PRIVILEGED_ROLES))),
              help="role to grant (repeat); default: every ubi:* role")
@click.option("--sub", default="dev-user", show_default=True)
@click.option("--ttl", default=3600, show_default=True, help="seconds")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False),
              help="PEM private key (RS256/ES256); default: HS256 with UBI_JWT_SECRET")
@click.option("--url", "as_url", is_flag=True,
              help="print a sign-in link for the pages (/ui) instead of the bare token")
@click.option("--base-url", default=None,
              help="where the pages are served (with --url); default http://127.0.0.1:$PORT")
def token(tenant_id: str | None, roles: tuple[str, ...], sub: str, ttl: int,
          key_file: str | None, as_url: bool, base_url: str | None) -> None:
    """Mint a development token for a tenant and roles."""
    from ubi.settings import get_settings
    from ubi.web.auth import mint_token

    if not tenant_id and not (set(roles) & PRIVILEGED_ROLES):
        raise click.UsageError("--tenant is required unless a privileged role is granted")
    pem = open(key_file).read() if key_file else None  # noqa: SIM115 - short-lived CLI
    minted = mint_token(sub=sub, tenant_id=tenant_id, roles=roles or ROLES,
                        ttl=timedelta(seconds=ttl), private_key_pem=pem)
    if as_url:
        from ubi.web.pages import sign_in_link

        base = base_url or f"http://127.0.0.1:{get_settings().port}"
        click.echo(sign_in_link(base, minted))
    else:
        click.echo(minted)


# --- consistency checks ----------------------------------------------------------------------

@main.group()
def check() -> None:
    """Check stored data against what the analytics library computes from the events."""


@check.command("features")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def check_features(tenant_id: str, as_json: bool) -> None:
    """Recompute every feature of TENANT from its stored events with the pure library and
    compare with the stored rows (missing, extra, different); exit 1 on any difference."""
    from ubi.models import session_scope
    from ubi.services.feature_check import check_features as run_check

    with session_scope() as session:
        report = run_check(session, tenant_id)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.summary())
    if not report.consistent:
        sys.exit(1)


@main.command("recompute")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--from", "first_day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First UTC day (default: the tenant's first stored day).")
@click.option("--to", "last_day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last UTC day (default: today).")
@click.option("--wait", is_flag=True, help="Wait for the run's outcome and print it.")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="Seconds --wait waits.")
def recompute(tenant_id: str, first_day: Any, last_day: Any, wait: bool,
              timeout: float) -> None:
    """Replay TENANT's days from its stored data on the workers (onboarding with history,
    repair): features of every scope, the scores of evaluated days, detection of the closed
    days not evaluated yet, then the baselines. Prints the run's id (a task on the baselines
    queue; on the embedded default it runs here)."""
    import uuid

    from ubi.celery_app import app
    from ubi.tasks.baselines import recompute_range

    first = first_day.date() if first_day else None
    last = last_day.date() if last_day else None
    if first and last and last < first:
        raise click.UsageError("--to is before --from")
    run_id = str(uuid.uuid4())
    result = recompute_range.apply_async(kwargs={
        "tenant_id": tenant_id, "first_day": first.isoformat() if first else None,
        "last_day": last.isoformat() if last else None, "run_id": run_id}, task_id=run_id)
    click.echo(run_id)
    if not wait:
        return
    if app.conf.task_always_eager:
        outcome = result.get()
    else:
        from celery.backends.base import DisabledBackend
        from celery.exceptions import TimeoutError as CeleryTimeout

        if isinstance(app.backend, DisabledBackend):
            raise click.ClickException("--wait needs a result backend (set REDIS_URL or "
                                       "CELERY_RESULT_BACKEND); the run goes on regardless")
        try:
            outcome = app.AsyncResult(run_id).get(timeout=timeout, interval=0.5)
        except CeleryTimeout:
            raise click.ClickException(f"run {run_id} not finished after {timeout:g} s; it "
                                       "goes on: are baselines workers running?") from None
        except Exception as exc:
            raise click.ClickException(f"run {run_id} failed: {exc}") from None
    click.echo(json.dumps(outcome, sort_keys=True))


# --- shared clock (development and tests) -----------------------------------------------------

@main.group("clock")
def clock_group() -> None:
    """The shared clock of development processes (UBI_CLOCK_FILE, with UBI_DEV_MODE=1)."""


def _clock_path() -> Any:
    from ubi.settings import clock_file

    path = clock_file()
    if path is None:
        raise click.UsageError("no shared clock: set UBI_CLOCK_FILE (and UBI_DEV_MODE=1) "
                               "for every UBI process that should share it")
    return path


@clock_group.command("show")
def clock_show() -> None:
    """Print what every process sharing the clock reads as now."""
    from ubi import clock

    path = _clock_path()
    try:
        shared = clock.read_shared_clock(path)
    except FileNotFoundError:
        click.echo(f"{clock.utcnow().isoformat()} (system clock: {path} does not exist)")
        return
    state = "ticking" if shared.ticking else "frozen"
    click.echo(f"{shared.now().isoformat()} ({state}, set to {shared.at.isoformat()})")


@clock_group.command("set")
@click.argument("instant")
@click.option("--frozen", is_flag=True, help="stay at INSTANT instead of running on from it")
def clock_set(instant: str, frozen: bool) -> None:
    """Move the shared clock to INSTANT (ISO 8601 with an offset, e.g. 2026-06-20T01:30Z)."""
    from datetime import datetime

    from ubi import clock

    try:
        at = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="INSTANT") from exc
    if at.tzinfo is None:
        raise click.BadParameter("give a UTC offset (Z or +HH:MM)", param_hint="INSTANT")
    shared = clock.set_shared_clock(_clock_path(), at, ticking=not frozen)
    click.echo(shared.at.isoformat())


@clock_group.command("reset")
def clock_reset() -> None:
    """Back to the system clock (removes the clock file)."""
    from ubi import clock

    clock.clear_shared_clock(_clock_path())
    click.echo("system clock")


# --- running ---------------------------------------------------------------------------------

from ubi.devservers.commands import devserver  # noqa: E402 - the group, registered here

main.add_command(devserver)


# --- evidence receipts -----------------------------------------------------------------------

@main.group()
def receipts() -> None:
    """Evidence receipts: dead ones, re-drives, signature checks (SPEC §13)."""


@receipts.command("dead")
@click.option("--tenant", "tenant_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def receipts_dead(tenant_id: str | None, as_json: bool) -> None:
    """List receipts ERIS refused for good or that failed for 24 h."""
    from ubi.models import session_scope
    from ubi.services import receipts as service

    with session_scope() as session:
        rows = service.dead_receipts(session, tenant_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no dead receipts")
        return
    for r in rows:
        click.echo(f"{r['receipt_id']}  {r['tenant_id']}  {r['resource_type']}  "
                   f"attempts={r['attempts']}  first={r['first_attempt_at']}  "
                   f"error={r['last_error']}")


@receipts.command("retry")
@click.argument("receipt_id", required=False)
@click.option("--all", "all_receipts", is_flag=True, help="every dead receipt")
def receipts_retry(receipt_id: str | None, all_receipts: bool) -> None:
    """Re-drive a dead receipt (or --all): pending again, due now, a fresh 24 h window."""
    from ubi.models import session_scope
    from ubi.services import receipts as service

    if bool(receipt_id) == all_receipts:
        raise click.UsageError("give one RECEIPT_ID or --all")
    with session_scope() as session:
        ids = service.redrive_dead(session, None if all_receipts else [str(receipt_id)])
    if not ids and receipt_id:
        raise click.ClickException(f"no dead receipt {receipt_id}")
    click.echo(f"re-driven {len(ids)} receipt(s)")
    for i in ids:
        click.echo(i)


@receipts.command("verify")
@click.argument("file", type=click.File("r"))
@click.option("--keys-url", default=None, help="a served key set (GET /v1/ubi/receipts/"
              "public-key of a running UBI); default: this deployment's own keys")
def receipts_verify(file: Any, keys_url: str | None) -> None:
    """Check a receipt JSON file's signature against UBI's key set (exit 1 when it fails)."""
    from ubi.services import receipts as service

    try:
        receipt = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"not JSON: {exc}") from exc
    if keys_url:
        import requests

        resp = requests.get(keys_url, timeout=10)
        resp.raise_for_status()
        key_set = resp.json()
    else:
        key_set = service.key_set()
    reason = service.verify_receipt(receipt, key_set)
    if reason is not None:
        raise click.ClickException(f"receipt does not verify: {reason}")
    click.echo(f"ok: receipt {receipt['receipt_id']} verifies with key "
               f"{receipt['signature'].split(':')[1]}")


@main.command("worker", context_settings={"ignore_unknown_options": True})
@click.argument("group")
@click.option("--concurrency", "-c", type=int, default=None)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(group: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """A Celery worker for one queue GROUP (ingest, pipeline, baselines, delivery,
    maintenance); extra arguments go to ``celery worker``."""
    import celeryconfig
    from ubi.observability.multiproc import prepare_group
    from ubi.settings import get_settings

    if group not in celeryconfig.WORKER_GROUPS:
        raise click.UsageError(f"unknown group {group!r}: {sorted(celeryconfig.WORKER_GROUPS)}")
    if get_settings().embedded_broker:
        raise click.ClickException("set CELERY_BROKER_URL: the embedded default runs tasks "
                                   "in-process and has no workers")
    # Before the app and its tasks import prometheus_client (multiproc's docstring).
    prepare_group(group)
    settings = get_settings()
    from ubi.celery_app import app
    from ubi.store.connections import check_budget

    # Each prefork child has its own pool (Celery's default concurrency: the CPU count).
    check_budget(f"worker {group}", concurrency or os.cpu_count() or 1, settings)
    queues = ",".join(settings.queue_name(q) for q in celeryconfig.WORKER_GROUPS[group])
    # The node name carries the queue prefix: two deployments (or test runs) sharing a broker
    # must not share a node's exclusive pidbox queue (RESOURCE_LOCKED, and nothing consumed).
    argv = ["worker", "-Q", queues, "-n", settings.queue_name(f"{group}@%h"), "-E",
            "--loglevel", settings.log_level]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main([*argv, *celery_args])


@main.command("beat", context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Celery beat, guarded by a Redis lock so only one instance ever schedules."""
    import signal

    from ubi.observability.multiproc import no_group
    from ubi.settings import get_settings

    # Beat only schedules (it records no SPEC §11 metric) and nothing scrapes it: no metrics
    # directory, so it can never write into another group's (an inherited one is dropped).
    no_group()
    from ubi.celery_app import app
    from ubi.integrations.beat_lock import BeatLock
    from ubi.integrations.dependencies import redis_client

    settings = get_settings()
    client = redis_client(settings)
    if client is None:
        raise click.ClickException("set REDIS_URL: beat needs Redis for its single-instance lock")
    lock = BeatLock(client, f"{settings.queue_prefix}ubi:beat:lock")
    click.echo("waiting for the beat lock (another beat may be running)...")
    lock.acquire(wait=True)
    click.echo("beat lock held: scheduling")
    lock.keep_alive(on_lost=lambda: os.kill(os.getpid(), signal.SIGTERM))
    schedule = str(settings.data_dir / "celerybeat-schedule")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        app.start(["beat", "--schedule", schedule, "--loglevel", settings.log_level,
                   *celery_args])
    finally:
        lock.stop()
        lock.release()


@main.command("bench", context_settings={"ignore_unknown_options": True,
                                         "allow_extra_args": True})
@click.argument("name")
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def bench(name: str, bench_args: tuple[str, ...]) -> None:
    """Run a benchmark of ``benchmarks/`` (analytics, api, ingest, pipeline, baselines,
    features_step, storage, stream); it prints its figures (``--json`` for one JSON object).
    Benchmarks live in the checkout."""
    import importlib
    import re

    from ubi.services.schema import PROJECT_ROOT

    if not re.fullmatch(r"[a-z_]+", name):
        raise click.UsageError("benchmark names are lowercase words")
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        available = sorted(p.stem for p in (PROJECT_ROOT / "benchmarks").glob("[a-z]*.py"))
        raise click.UsageError(f"no benchmark {name!r}; available: {available}") from exc
    sys.exit(module.main(list(bench_args)))


@main.command("demo")
@click.option("--seed", default=7, show_default=True, help="seed of the generated organisation")
@click.option("--actors", default=60, show_default=True)
@click.option("--weeks", default=8, show_default=True)
@click.option("--real", "real_file", type=click.Path(exists=True, dir_okay=False),
              help="replay a JSONL(.gz) of real envelopes instead of a generated workload")
@click.option("--json", "as_json", is_flag=True, help="print the scorecard as one JSON object")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="also write an HTML report (per-team score timelines and signals)")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("--serve", is_flag=True,
              help="then keep the web server running on the demo's data and print a sign-in "
                   "link to its pages (Ctrl+C stops it)")
@click.option("--port", type=int, default=None,
              help="port of --serve (default: $PORT or 8000; 0: any free port)")
def demo(seed: int, actors: int, weeks: int, real_file: str | None, as_json: bool,
         html_path: str | None, no_progress: bool, serve: bool, port: int | None) -> None:
    """The main job end to end: a realistic organisation's events through UBI (embedded
    default unless servers are configured), the signals found, and a scorecard."""
    from ubi.demo.runner import prepare_environment

    settings = prepare_environment()  # before anything imports the Celery app
    from ubi import demo as demo_run
    from ubi.demo import report
    from ubi.runtime import tune_gc

    tune_gc(settings)  # the demo is a service process too: web, workers and all, in one
    echo = (lambda _msg: None) if as_json else click.echo
    progress = not (no_progress or as_json)
    echo(f"UBI demo — {report.describe_setup(settings)}")
    if real_file:
        result, real = demo_run.run_real(settings, real_file, progress=progress)
        report.print_ingest(echo, result)
        report.print_signals(echo, result)
        ok = report.print_real(echo, real)
        if as_json:
            click.echo(json.dumps({**real, "features_check": result.extra["features_check"]}))
    else:
        echo(f"Generating an organisation of {actors} actors over {weeks} weeks (seed {seed})"
             " with planted behaviour changes...")
        result, workload, card = demo_run.run_generated(
            settings, seed=seed, actors=actors, weeks=weeks, progress=progress)
        report.print_ingest(echo, result, teams=len(workload.truth.teams))
        report.print_signals(echo, result)
        ok = report.print_scorecard(echo, card)
        if as_json:
            click.echo(json.dumps({**card, "features_check": result.extra["features_check"]}))
    ok = ok and result.extra["features_check"]["consistent"]
    if html_path:
        from ubi.demo.html import write_report

        write_report(settings, result, html_path)
        echo(f"HTML report: {html_path}")
    if not ok:
        echo("(the scorecard misses a target, or stored features differ: see above)")
    if serve:
        from ubi.demo.runner import serve_pages

        serve_pages(settings, result.tenant_id, port=settings.port if port is None else port,
                    echo=click.echo)
    elif not as_json:
        echo("See it as a tech lead would: `ubi demo --serve` keeps the pages running on "
             "this data.")


@main.command("generate")
@click.option("--seed", default=7, show_default=True)
@click.option("--actors", default=60, show_default=True)
@click.option("--weeks", default=8, show_default=True)
@click.option("--end-day", help="last day (YYYY-MM-DD); default yesterday")
@click.option("--tenant", default="sim-org", show_default=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="JSONL file of envelopes (.gz to compress); the truth goes beside it")
def generate(seed: int, actors: int, weeks: int, end_day: str | None, tenant: str,
             out_path: str) -> None:
    """Write a generated organisation's envelopes and its planted ground truth."""
    from datetime import date, timedelta

    from ubi import clock
    from ubi.simulation.generator import generate as make
    from ubi.simulation.generator import truth_path_for, write_jsonl, write_truth

    last = date.fromisoformat(end_day) if end_day else clock.today() - timedelta(days=1)
    workload = make(seed, actors=actors, weeks=weeks, end_day=last, tenant_id=tenant)
    path = write_jsonl(workload, out_path)
    truth = write_truth(workload.truth, truth_path_for(path))
    click.echo(f"{len(workload.envelopes):,} envelopes -> {path}; ground truth -> {truth}")


def _days(text: str) -> list[Any]:
    """``2025-03-24..2025-03-30`` or ``2025-03-24,2025-03-27``: the days named."""
    from datetime import date

    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        first, _, last = part.partition("..")
        day, end = date.fromisoformat(first), date.fromisoformat(last or first)
        while day <= end:
            out.append(day)
            day += timedelta(days=1)
    return out


@main.command("evaluate")
@click.option("--seeds", required=True, help="comma-separated seeds, e.g. 7,53,73")
@click.option("--end-days", help="end days: YYYY-MM-DD, comma-separated, or FIRST..LAST")
@click.option("--per-seed", type=int, default=None,
              help="derive this many end days per seed among the 7 days ending on --last")
@click.option("--last", default="2025-03-30", show_default=True,
              help="last possible end day of --per-seed")
@click.option("--weeks", default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print runs and totals as one JSON object")
@click.option("--save", "save_path", type=click.Path(dir_okay=False),
              help="also write every run's whole scorecard (JSON) here")
def evaluate(seeds: str, end_days: str | None, per_seed: int | None, last: str, weeks: int,
             as_json: bool, save_path: str | None) -> None:
    """Detection quality over generated tenants ending on several days (issue 18): per run
    the targets missed, then totals over the runs. One run at a time, about 25 s each."""
    from datetime import date

    from ubi.simulation import evaluation

    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    if (end_days is None) == (per_seed is None):
        raise click.UsageError("give exactly one of --end-days and --per-seed")
    plan = [(seed, day) for seed in seed_list
            for day in (_days(end_days) if end_days is not None
                        else evaluation.derived_end_days(seed, per_seed or 0,
                                                         last=date.fromisoformat(last)))]
    runs = []
    for seed, day in plan:
        run = evaluation.evaluate_run(seed, day, weeks=weeks)
        runs.append(run)
        if not as_json:
            click.echo(evaluation.format_report([run], evaluation.summarise([run]))[0])
    totals = evaluation.summarise(runs)
    if save_path:
        with open(save_path, "w") as fh:
            json.dump([{"seed": r.seed, "end_day": r.end_day.isoformat(), "card": r.card}
                       for r in runs], fh)
    if as_json:
        click.echo(json.dumps({"runs": [evaluation.run_summary(r) for r in runs],
                               "totals": totals}))
    else:
        for line in evaluation.format_report([], totals):
            click.echo(line)


if __name__ == "__main__":
    main()
