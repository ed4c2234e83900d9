"""A small, deterministic instance of a JSON schema: tool-call arguments and structured answers.

Only what tool and response schemas use in practice: `type` (or a list of types), `properties` with
`required` (only required properties are filled: the instance is minimal), `enum`, `const`, `anyOf` /
`oneOf` / `allOf` (the first branch), `$ref` into `$defs` / `definitions`, `items` with `minItems`, string
`format` and `minLength`, number `minimum`. Anything else is ignored rather than refused.
"""

from __future__ import annotations

import math
from typing import Any

# Strings get a value that reads naturally in a test, chosen by the property's name, else "example".
_BY_NAME = {"city": "Paris", "location": "Paris", "country": "France", "unit": "celsius", "email": "user@example.com",
            "url": "https://example.com", "date": "2024-01-01", "language": "en"}
_BY_FORMAT = {"date": "2024-01-01", "date-time": "2024-01-01T00:00:00Z", "time": "00:00:00",
              "email": "user@example.com", "uri": "https://example.com", "uuid": "00000000-0000-4000-8000-000000000000"}
_DEPTH = 32  # a recursive schema (a tree of nodes) still yields a finite instance


def instance(schema: Any, name: str = "", *, root: Any = None, depth: int = 0) -> Any:
    """A minimal instance of `schema`; `name` is the property it fills (it picks string values)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > _DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return instance(_resolve(root, ref), name, root=root, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            # Prefer a branch that is not `null`: `Optional[X]` should still produce an X.
            pick = next((b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")), branches[0])
            return instance(pick, name, root=root, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _typed(str(kind), schema, name, root, depth)


def _typed(kind: str, schema: dict[str, Any], name: str, root: Any, depth: int) -> Any:
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        keys = [k for k in required if isinstance(k, str)] if isinstance(required, list) else []
        return {k: instance(props.get(k, {}), k, root=root, depth=depth + 1) for k in keys}
    if kind == "array":
        count = schema.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 0
        return [instance(schema.get("items", {}), name, root=root, depth=depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        value = 1  # valid for "number" too
        low, above = schema.get("minimum"), schema.get("exclusiveMinimum")
        if isinstance(low, (int, float)) and low > value:
            value = math.ceil(low)
        if isinstance(above, (int, float)) and above >= value:
            value = math.floor(above) + 1
        return value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    text = _BY_FORMAT.get(fmt, "") if isinstance(fmt, str) else ""
    text = text or _BY_NAME.get(name.lower(), "example")
    least = schema.get("minLength")
    if isinstance(least, int) and len(text) < least:
        text += "x" * (least - len(text))
    return text


def _resolve(root: Any, ref: str) -> Any:
    """A local `$ref` (`#/$defs/Name`); anything else resolves to an empty schema."""
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node
