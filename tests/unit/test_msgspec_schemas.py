"""OpenAPI 3.0 components from msgspec types (``ubi.web.msgspec_schemas``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from ubi.web.msgspec_schemas import openapi_components


class Inner(msgspec.Struct):
    """An inner thing."""

    n: int


class Outer(msgspec.Struct):
    kind: Literal["a", "b"]
    inner: Inner
    maybe_inner: Inner | None = None
    items: list[Inner] = []
    note: Annotated[str, msgspec.Meta(max_length=8, examples=["hi"])] | None = None
    either: int | str | None = None
    level: Literal["low", "high"] | None = None


def test_components_are_renamed_referenced_and_spelled_for_openapi_3_0() -> None:
    components = openapi_components({"Thing": Outer})
    assert set(components) == {"Thing", "Inner"}
    thing = components["Thing"]
    assert thing["title"] == "Thing"
    props = thing["properties"]
    assert props["inner"] == {"$ref": "#/components/schemas/Inner"}
    assert props["items"]["items"] == {"$ref": "#/components/schemas/Inner"}
    # 3.0 ignores the siblings of a $ref, so a nullable reference is wrapped.
    assert props["maybe_inner"] == {"allOf": [{"$ref": "#/components/schemas/Inner"}],
                                    "nullable": True, "default": None}
    assert props["note"] == {"type": "string", "maxLength": 8, "example": "hi",
                             "nullable": True, "default": None}
    assert props["either"] == {"anyOf": [{"type": "integer", "nullable": True},
                                         {"type": "string", "nullable": True}],
                               "default": None}
    assert props["level"] == {"enum": ["high", "low", None], "nullable": True,
                              "default": None}
    assert thing["required"] == ["kind", "inner"]
    assert components["Inner"]["description"] == "An inner thing."


def test_a_construct_without_an_openapi_3_0_form_is_an_error() -> None:
    class Pair(msgspec.Struct):
        both: tuple[int, str]  # prefixItems

    with pytest.raises(ValueError, match="prefixItems"):
        openapi_components({"Pair": Pair})
