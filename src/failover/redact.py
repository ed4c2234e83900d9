"""Every mask and scrub of a secret, in one place.

- `mask_url`: a URL with its password replaced (a Redis URL may carry one).
- `mask_secret`: how a key may be shown (`failover check`): its last four characters at most.
- `Scrubber`: removes configured secrets from any text that leaves the router (attempt messages,
  exception messages and chains, span attributes, log lines).

Scrubbing replaces whole, exact occurrences of real secrets only. A "key" shorter than
`MIN_SECRET_LENGTH` is a placeholder (`none`, `x`, `local`), not a secret: cutting it out of
messages would mangle ordinary words ("You e***ceeded your quota") and protect nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_SECRET_LENGTH = 8
REDACTED = "***"

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_url(url: str) -> str:
    """The URL with any password replaced: `redis://:****@host:6379/0`."""
    return _URL_PASSWORD.sub(r"\1****@", url)


def mask_secret(value: str | None) -> str:
    """A secret as it may be shown: the last 4 characters only of a long one, nothing of a short one."""
    if not value:
        return "(none)"
    return "****" + value[-4:] if len(value) >= 16 else "****"


class Scrubber:
    """Replaces every occurrence of the given secrets in a text with `***`.

    Built once per config; `scrub` is called on error paths and telemetry, never per chunk.
    """

    __slots__ = ("_pattern", "secrets")

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        real = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # Longest first: a secret that contains another is replaced whole.
        self.secrets: tuple[str, ...] = tuple(sorted(real, key=len, reverse=True))
        self._pattern = re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def scrub_data(self, value: object) -> object:
        """A JSON-like value (an SDK error body) with every string scrubbed; containers are copied."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self.scrub_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_data(v) for v in value)
        return value

    def scrub_exception(self, exc: BaseException) -> BaseException:
        """Scrub an exception and its whole chain in place, as a traceback would print it: `args`,
        the SDKs' `message` and `body`, notes, `__cause__` and `__context__`. Returns `exc`."""
        if self._pattern is None:
            return exc
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            e = todo.pop()
            if e is None or id(e) in seen:
                continue
            seen.add(id(e))
            try:
                e.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in e.args)
                for name in ("message", "body"):
                    if isinstance(getattr(e, name, None), str | dict | list):
                        setattr(e, name, self.scrub_data(getattr(e, name)))
                notes = getattr(e, "__notes__", None)
                if isinstance(notes, list):
                    e.__notes__ = [self.scrub(n) if isinstance(n, str) else n for n in notes]
            except (AttributeError, TypeError):  # a read-only attribute: the rest is still scrubbed
                pass
            todo += [e.__cause__, e.__context__]
        return exc

    def __repr__(self) -> str:  # never the secrets themselves
        return f"<Scrubber of {len(self.secrets)} secret(s)>"
