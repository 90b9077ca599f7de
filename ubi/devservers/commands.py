"""``ubi devserver``: UBI's API and the stand-ins of the outside services, for development and
tests (registered on ``ubi.cli.main``)."""

from __future__ import annotations

from typing import Any

import click


@click.group()
def devserver() -> None:
    """Development servers: UBI's API, and stand-ins of the outside services it calls."""


@devserver.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="default: $PORT or 8000 (0: any free port)")
def devserver_web(host: str, port: int | None) -> None:
    """The API on a development server, one log line per request (use gunicorn in
    production: see the Procfile)."""
    import logging
    import re

    from werkzeug.serving import WSGIRequestHandler, make_server

    from ubi.services import schema
    from ubi.settings import get_settings
    from ubi.web.app import API_PREFIX, create_app

    request_log = logging.getLogger("ubi.devserver")

    class RequestLog(WSGIRequestHandler):
        """Werkzeug's request line through UBI's logging (its own adds terminal colours)."""

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            status = getattr(code, "value", code)  # an HTTPStatus for errors werkzeug sends
            # The pages' sign-in link carries a token: never into the log.
            path = re.sub(r"([?&]token=)[^&]*", r"\1[redacted]", self.path)
            request_log.info("%s %s %s", self.command, path, status,
                             extra={"ubi": {"client": self.address_string(),
                                            "method": self.command, "path": path,
                                            "status": status}})

    settings = get_settings()
    if settings.embedded_db:
        schema.upgrade(settings)
    server = make_server(host, settings.port if port is None else port, create_app(settings),
                         threaded=True, request_handler=RequestLog)
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"UBI API listening on http://{shown_host}:{server.server_port}{API_PREFIX} "
               f"(Swagger UI at {API_PREFIX}/docs), pages for people at "
               f"http://{shown_host}:{server.server_port}/ui (sign in with a link from "
               "`ubi token --tenant T --url`); Ctrl+C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@devserver.command("eris")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8100, show_default=True, help="0: any free port")
@click.option("--keys-url", default=None,
              help="UBI's key set, e.g. http://127.0.0.1:8000/v1/ubi/receipts/public-key")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="a file holding that key set (JSON) or one Ed25519 public key (PEM)")
def devserver_eris(host: str, port: int, keys_url: str | None, key_file: str | None) -> None:
    """A stand-in for ERIS (development and tests only) that verifies every receipt's
    signature, with fault injection (``POST /_faults``); see ubi/devservers/eris.py."""
    from ubi.devservers.eris import ErisStandIn

    if not keys_url and not key_file:
        raise click.UsageError("give --keys-url or --key-file (UBI's receipt public keys)")
    eris = ErisStandIn(keys_url=keys_url, key_file=key_file, host=host, port=port)
    click.echo(f"ERIS stand-in (development and tests only) listening on {eris.url}; point "
               f"UBI at it with UBI_ERIS_URL={eris.url}; Ctrl+C stops it")
    eris.serve()


@devserver.command("iam")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8200, show_default=True, help="0: any free port")
@click.option("--jwt-secret", default=None,
              help="HS256 secret the tokens are signed with (default: UBI's own, as "
                   "`ubi token` signs with)")
@click.option("--public-key-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM public key of RS256/ES256 tokens (instead of --jwt-secret)")
@click.option("--audience", default=None, help="required aud claim (default: not checked)")
@click.option("--issuer", default=None, help="required iss claim (default: not checked)")
@click.option("--ttl", type=float, default=60.0, show_default=True,
              help="seconds ahead each answer's valid_until lies")
def devserver_iam(host: str, port: int, jwt_secret: str | None, public_key_file: str | None,
                  audience: str | None, issuer: str | None, ttl: float) -> None:
    """A stand-in for the platform IAM's token verification (development and tests only),
    with revocation (``POST /_revoked``) and fault injection (``POST /_faults``); see
    ubi/devservers/iam.py."""
    from pathlib import Path

    from ubi.devservers.iam import IamStandIn

    if not jwt_secret and not public_key_file:
        from ubi.settings import get_settings

        # UBI's secret (UBI_JWT_SECRET, or the one generated for the data dir), so tokens
        # from `ubi token` verify at the stand-in as they do locally.
        jwt_secret = get_settings().jwt_secret
    if jwt_secret and public_key_file:
        raise click.UsageError("give --jwt-secret or --public-key-file, not both")
    if not jwt_secret and not public_key_file:
        raise click.UsageError("give --jwt-secret or --public-key-file")
    iam = IamStandIn(jwt_secret=jwt_secret,
                     public_key_pem=Path(public_key_file).read_text() if public_key_file
                     else None,
                     audience=audience, issuer=issuer, ttl=ttl, host=host, port=port)
    click.echo(f"IAM stand-in (development and tests only) listening on {iam.url}; point "
               f"UBI at it with UBI_IAM_URL={iam.url}; Ctrl+C stops it")
    iam.serve()


@devserver.command("governance")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8300, show_default=True, help="0: any free port")
@click.option("--policy", "policies", multiple=True, metavar="TENANT=MONTHS",
              help="answer delete for TENANT's months at least MONTHS old (repeatable)")
@click.option("--legal-hold", "holds", multiple=True, metavar="TENANT",
              help="TENANT's data is under legal hold (repeatable)")
def devserver_governance(host: str, port: int, policies: tuple[str, ...],
                         holds: tuple[str, ...]) -> None:
    """A stand-in for Data Governance (development and tests only): retention answers per
    tenant as configured (``PUT /_policies/{tenant}``), deletion callbacks to UBI
    (``POST /_callbacks/deletion``) and fault injection; see ubi/devservers/governance.py."""
    from ubi.devservers.governance import GovernanceStandIn, Policy

    configured: dict[str, Policy] = {}
    for item in policies:
        tenant_id, _, months = item.partition("=")
        if not tenant_id or not months.isdigit():
            raise click.UsageError(f"--policy {item!r}: expected TENANT=MONTHS")
        configured[tenant_id] = Policy(delete_after_months=int(months),
                                       policy_id=f"dev-{tenant_id}")
    for tenant_id in holds:
        configured.setdefault(tenant_id, Policy(policy_id=f"dev-{tenant_id}")).legal_hold = True
    governance = GovernanceStandIn(policies=configured, host=host, port=port)
    click.echo(f"Data Governance stand-in (development and tests only) listening on "
               f"{governance.url}; point UBI at it with UBI_GOVERNANCE_URL={governance.url}; "
               f"Ctrl+C stops it")
    governance.serve()
