"""`${VAR}` and `${VAR:-default}` in string values, read from the environment."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_VAR_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?")

# Variables whose name says they hold a credential: their value must not become a name, a model or a
# type, which are printed in logs, spans and `failover check` (`model: ${OPENAI_API_KEY}` is a slip).
_SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:_|$)", re.IGNORECASE)


_WHOLE_REFERENCE = re.compile(r"\$\{[^${}]*\}")


class InterpolationError(Exception):
    """A malformed reference; the message never quotes a text marked secret."""


@dataclass(slots=True)
class Resolved:
    text: str
    refs: list[str] = field(default_factory=list)  # every variable referenced, in order
    unset: list[str] = field(default_factory=list)  # referenced without default and not set
    empty: list[str] = field(default_factory=list)  # set to "" or unset-with-default


def interpolate(text: str, env: Mapping[str, str], *, secret: bool = False) -> Resolved:
    """Replace `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`; any other `$` is literal.

    `:-` follows the shell: the default applies when the variable is unset *or empty*. A malformed
    reference is an error rather than literal text, because it is almost always a typo that would
    otherwise reach a provider as a model name or a URL. With `secret`, messages never quote the text.
    """
    out: list[str] = []
    result = Resolved("")
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        if text.startswith("$${", j):
            out.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            out.append("$")
            i = j + 1
            continue
        end = text.find("}", j + 2)
        body = text[j + 2 : end] if end >= 0 else text[j + 2 :]
        match = _VAR_BODY.fullmatch(body) if end >= 0 else None
        if match is None or "${" in (match.group(2) or ""):
            reference = text[j : end + 1] if end >= 0 else text[j:]
            quoted = "" if secret or len(reference) > 40 else f" '{reference}'"
            raise InterpolationError(
                f"invalid variable reference{quoted}: write ${{NAME}} or ${{NAME:-default}} (and $${{ for a "
                "literal ${)"
            )
        name, default = match.group(1), match.group(2)
        result.refs.append(name)
        value = env.get(name)
        if default is not None:
            if not value:
                result.empty.append(name)
            out.append(value if value else default)
        elif value is None:
            result.unset.append(name)
        else:
            if value == "":
                result.empty.append(name)
            out.append(value)
        i = end + 1
    result.text = "".join(out)
    return result


def unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def looks_secret(name: str) -> bool:
    """True for a variable named like a credential (`OPENAI_API_KEY`, `GITHUB_TOKEN`, `DB_PASSWORD`)."""
    return _SECRET_NAME.search(name) is not None


def value_of(text: str, names: Iterable[str]) -> str:
    """How a message names a value read from the environment (`text` as written) instead of quoting it."""
    refs = ", ".join(f"${{{name}}}" for name in unique(names))
    whole = _WHOLE_REFERENCE.fullmatch(text.strip()) is not None
    return f"the value of {refs}" if whole else f"a value built from {refs}"
