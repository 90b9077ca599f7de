"""Helpers shared by the blueprints: settings access, id validation, security docs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import current_app

from ubi.settings import Settings
from ubi.web.errors import ApiError

AUTH: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def settings() -> Settings:
    return current_app.config["UBI_SETTINGS"]


@dataclass(frozen=True)
class IdRule:
    pattern: re.Pattern[str]
    description: str

    def check(self, field: str, value: str) -> str:
        if not self.pattern.match(value):
            raise ApiError(400, f"{field}: {self.description}", code="bad_request",
                           errors={field: self.description})
        return value


TENANT_ID = IdRule(re.compile(r"^[A-Za-z0-9_.-]{1,64}$"), "1-64 characters of [A-Za-z0-9_.-]")
