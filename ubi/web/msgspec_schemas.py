"""OpenAPI components generated from msgspec types, so that a type the hot path validates with
is documented by that same definition instead of a hand-written copy.

msgspec writes JSON Schema 2020-12 with its definitions under ``#/$defs/``; the API document
is OpenAPI 3.0, whose schema objects are an older dialect. ``openapi_components`` renames the
definitions to their component names, points every ``$ref`` at ``#/components/schemas/`` and
turns the constructs 3.0 lacks into their 3.0 spelling (``null`` alternatives become
``nullable``, ``examples`` becomes ``example``). A construct it does not know how to translate
is an error, not a silently wrong document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_DEFS = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
_NULL = {"type": "null"}


def openapi_components(types: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The OpenAPI 3.0 component schemas of ``types`` (component name -> msgspec type), and
    of every type they refer to (under its msgspec name unless it is one of ``types``)."""
    _, defs = msgspec.json.schema_components(list(types.values()))
    renames: dict[str, str] = {}
    for name, tp in types.items():
        (ref,), _ = msgspec.json.schema_components([tp])
        if "$ref" not in ref:
            raise ValueError(f"{name}: only named types (Structs, ...) make components")
        renames[ref["$ref"].removeprefix(_DEFS)] = name
    components = {}
    for def_name, schema in defs.items():
        name = renames.get(def_name, def_name)
        converted = _to_openapi30(schema, renames)
        if "title" in converted:
            converted["title"] = name
        components[name] = converted
    return components


#: Keywords whose value is a schema, a list of schemas, or a map of names to schemas.
_SCHEMA_KEYS = ("items", "additionalProperties", "not")
_SCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf")
_SCHEMA_MAP_KEYS = ("properties",)
_UNSUPPORTED = ("$defs", "const", "prefixItems", "unevaluatedProperties", "dependentRequired",
                "$schema", "patternProperties")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null, in 3.0's spelling (``nullable`` counts only beside a ``type``)."""
    if "$ref" in schema:  # 3.0 ignores the siblings of a $ref: wrap it
        return {"allOf": [schema], "nullable": True}
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None], "nullable": True}
    return {**schema, "nullable": True}


def _to_openapi30(schema: dict[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    out = dict(schema)
    for unsupported in _UNSUPPORTED:
        if unsupported in out:
            raise ValueError(f"no OpenAPI 3.0 form for {unsupported!r}")
    ref = out.get("$ref")
    if ref is not None:
        if not ref.startswith(_DEFS):
            raise ValueError(f"unexpected $ref {ref!r}")
        target = ref.removeprefix(_DEFS)
        out["$ref"] = _COMPONENTS + renames.get(target, target)
    if "examples" in out:
        examples = out.pop("examples")
        if examples:
            out["example"] = examples[0]
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        if len(types) != 1:
            raise ValueError(f"no OpenAPI 3.0 form for type {out['type']!r}")
        if len(types) < len(out["type"]):
            out["nullable"] = True
        out["type"] = types[0]
    if _NULL in out.get("anyOf", ()):
        branches = [_nullable(b) for b in out.pop("anyOf") if b != _NULL]
        if len(branches) > 1:
            out["anyOf"] = branches
        else:
            for key, value in branches[0].items():
                if key in out and out[key] != value:
                    raise ValueError(f"conflicting {key!r} in a nullable schema")
                out[key] = value
        return _to_openapi30(out, renames)
    if out.get("type") == "null":
        raise ValueError("no OpenAPI 3.0 form for a null type outside a union")
    for key in _SCHEMA_KEYS:
        if isinstance(out.get(key), dict):
            out[key] = _to_openapi30(out[key], renames)
    for key in _SCHEMA_LIST_KEYS:
        if key in out:
            out[key] = [_to_openapi30(item, renames) for item in out[key]]
    for key in _SCHEMA_MAP_KEYS:
        if key in out:
            out[key] = {name: _to_openapi30(item, renames) for name, item in out[key].items()}
    return out
