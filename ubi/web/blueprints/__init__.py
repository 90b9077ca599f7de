"""One flask-smorest blueprint per resource."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from ubi.web.blueprints import (
        anchors,
        configs,
        events,
        exports,
        health,
        privacy,
        profiles,
        receipts,
        signals,
    )

    events.register_schemas(api.spec)
    for module in (health, events, configs, signals, profiles, exports, anchors,
                   receipts, privacy):
        api.register_blueprint(module.blp, url_prefix="/v1/ubi")
