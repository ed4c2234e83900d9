"""The reference section of docs/configuration.md, generated from the schema so it cannot drift.

    python -m failover.config.reference                 # print it
    python -m failover.config.reference --write FILE    # replace the section between the markers in FILE

Each key's type and rule come from its annotation (the `Rule` of its value type and its bounds),
its default from the model, its meaning from the field's `description`.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from failover.config.chains import CHAIN_RULES
from failover.config.checks import COMPUTED_KEYS
from failover.config.fields import MAX_SECONDS, Rule
from failover.config.schema import (
    BreakerSettings,
    Capabilities,
    Config,
    HedgeSettings,
    ProviderConfig,
    ProviderSettings,
    RetryBudgetSettings,
    RetrySettings,
    TelemetrySettings,
    TimeoutSettings,
)

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m failover.config.reference --write docs/configuration.md -->"
END = "<!-- END GENERATED REFERENCE -->"

# Each settings model and the heading it is documented under.
SECTIONS: dict[type[BaseModel], str] = {
    RetrySettings: "retry",
    RetryBudgetSettings: "retry.budget",
    BreakerSettings: "breaker",
    TimeoutSettings: "timeouts",
    HedgeSettings: "hedge",
    Capabilities: "capabilities",
    TelemetrySettings: "telemetry",
}
# Required in a file, optional in code (a ProviderConfig built in code may hold no key).
_REQUIRED_IN_FILES = ("api_key",)
_BOUNDS = ((annotated_types.Ge, "ge", "≥"), (annotated_types.Gt, "gt", ">"),
           (annotated_types.Le, "le", "≤"), (annotated_types.Lt, "lt", "<"))


def _parts(annotation: Any, metadata: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The base type and every metadata item, unwrapping `X | None`, Annotated and nested FieldInfo."""
    found = list(metadata)
    while True:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1:
            annotation = args[0]
        else:
            return annotation, found


def _type(info: FieldInfo) -> str:
    base, metadata = _parts(info.annotation, info.metadata)
    rules = [m.text for m in metadata if isinstance(m, Rule)]
    if rules:
        text = rules[0]
    elif typing.get_origin(base) is Literal:
        values = [f"`{v}`" for v in typing.get_args(base)]
        text = ", ".join(values[:-1]) + f" or {values[-1]}"
    elif isinstance(base, type) and issubclass(base, BaseModel):
        text = "mapping"
    else:
        text = getattr(base, "__name__", str(base))
    for kind, attr, sign in _BOUNDS:
        text += "".join(f", {sign} {_number(getattr(m, attr))}" for m in metadata if isinstance(m, kind))
    return text


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(name: str, info: FieldInfo) -> str:
    if name in _REQUIRED_IN_FILES:
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            heading = SECTIONS.get(type(value))
            if heading and type(value) is not RetryBudgetSettings:
                return f"see `{heading}`"
            return "`{" + ", ".join(f"{k}: {_number(v)}" for k, v in value.model_dump().items()) + "}`"
        return f"`{value!r}`" if value else "`{}`"
    if info.default is PydanticUndefined:
        return "required"
    value = info.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and len(value) > 30:
        return f"\"{value[:28].rstrip()}…\""
    return f"`{_number(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(model: type[BaseModel], names: Sequence[str]) -> Iterator[str]:
    yield "| key | type and rule | default | meaning |"
    yield "|---|---|---|---|"
    for name in names:
        info = model.model_fields[name]
        cells = (f"`{name}`", _type(info), _default(name, info), info.description or "")
        yield "| " + " | ".join(_cell(c) for c in cells) + " |"


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def reference() -> str:
    """The generated section, markers excluded."""
    own = [n for n in ProviderConfig.model_fields if n not in ProviderSettings.model_fields and n not in COMPUTED_KEYS]
    out = [
        "## Reference",
        "",
        "Generated from the schema (`src/failover/config/schema.py`). Every seconds value is finite and at most "
        f"{MAX_SECONDS:g} (one day). Numbers and booleans may also be written as strings (what `${{VAR}}` yields); "
        "booleans are not numbers and numbers are not booleans.",
        "",
        "### Top level",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        f"| `providers` | list of mappings | required | {Config.model_fields['providers'].description}; at least one |",
        "| `defaults` | mapping | `{}` | what every provider inherits; see `defaults` |",
        f"| `chains` | mapping of lists | `{{}}` | {Config.model_fields['chains'].description} |",
        f"| `telemetry` | mapping | see `telemetry` | {Config.model_fields['telemetry'].description} |",
        "",
        "### `providers[]`",
        "",
        "Each entry, in failover order. It may also set every key of `defaults`, which it overrides.",
        "",
        *_table(ProviderConfig, own),
        "",
        "### `defaults` (and each provider)",
        "",
        _doc(ProviderSettings),
        "",
        *_table(ProviderSettings, list(ProviderSettings.model_fields)),
        "",
        "### `chains`",
        "",
        f"{Config.model_fields['chains'].description}. {CHAIN_RULES}",
    ]
    for model, heading in SECTIONS.items():
        out += ["", f"### `{heading}`", "", _doc(model), "", *_table(model, list(model.model_fields))]
    return "\n".join(out) + "\n"


def replace_section(document: str, section: str) -> str:
    """`document` with the text between the markers replaced by `section`."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n" + section + document[end:]


def committed_section(document: str) -> str:
    return document[document.index(BEGIN) + len(BEGIN) + 1 : document.index(END)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m failover.config.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="replace the generated section of FILE in place")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(reference())
        return 0
    with open(args.write, encoding="utf-8") as handle:
        document = handle.read()
    with open(args.write, "w", encoding="utf-8") as handle:
        handle.write(replace_section(document, reference()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
