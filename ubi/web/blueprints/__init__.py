"""One flask-smorest blueprint per resource."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from ubi.web.blueprints import configs, health

    for module in (health, configs):
        api.register_blueprint(module.blp, url_prefix="/v1/ubi")
