"""The checks before pydantic: the shape of the document, unknown keys, and `${VAR}` resolution.

Unknown keys are reported (with the closest valid key) and dropped, so that pydantic checks what
is left. Every string value is interpolated; where a value came from the environment is kept, so
that no message ever quotes it (it may be a secret read into the wrong key).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from failover.config.env import InterpolationError, interpolate, looks_secret, unique, value_of
from failover.config.problems import KeyPath, Problems, kind_of, shown
from failover.config.schema import ProviderConfig, ProviderSettings, TelemetrySettings

TOP_KEYS = ("providers", "defaults", "chains", "telemetry")
# The sub-mappings of provider settings: each merges per key over `defaults`.
SECTIONS: dict[str, type[BaseModel]] = {
    name: info.annotation
    for name, info in ProviderSettings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}
# Mappings inside a section that also merge per key (`retry.budget`), like the sections themselves.
NESTED: dict[str, tuple[str, ...]] = {"retry": ("budget",)}
DEFAULT_KEYS = tuple(ProviderSettings.model_fields)
# api_key_env and missing_env are computed by the loader, never written by the user.
COMPUTED_KEYS = ("api_key_env", "missing_env")
PROVIDER_KEYS = tuple(k for k in ProviderConfig.model_fields if k not in COMPUTED_KEYS)
TELEMETRY_KEYS = tuple(TelemetrySettings.model_fields)
# Values shown in plain text in logs, spans and `failover check`: never from a variable named like a secret.
_SHOWN_KEYS = ("name", "type", "model")


def suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(slots=True)
class Shape:
    """The document's parts, unknown keys dropped; None for a provider entry that is not a mapping."""

    defaults: dict[str, Any]
    providers: list[dict[str, Any] | None]
    chains: dict[str, Any]
    telemetry: dict[str, Any]


class Checker:
    """Shape, keys and environment of one configuration, collecting problems instead of stopping."""

    def __init__(self, problems: Problems, env: Mapping[str, str]) -> None:
        self.problems = problems
        self.env = env
        # Path in the file → how a message names its value ("the value of ${X}") instead of quoting it.
        self.from_env: dict[KeyPath, str] = {}

    def show(self, path: KeyPath, value: Any) -> str:
        """A value as a message may quote it: never one from the environment, never a long one."""
        return self.from_env.get(path) or shown(value) or kind_of(value)

    # --- shape and keys

    def check_shape(self, root: Any) -> Shape:
        if not isinstance(root, dict):
            self.problems.add(None, f"the top level must be a mapping with a 'providers' list (got {kind_of(root)})")
            return Shape({}, [], {}, {})
        self._known(root, TOP_KEYS, ())
        defaults = self._section(root, "defaults", DEFAULT_KEYS, ())
        for key in SECTIONS:
            self._subsection(defaults, key, ("defaults",))
        telemetry = self._section(root, "telemetry", TELEMETRY_KEYS, ())
        chains = root.get("chains")
        if chains is None:
            chains = {}
        elif not isinstance(chains, dict):
            self.problems.add(("chains",), f"chains must be a mapping of chain names to lists of provider names "
                              f"(got {kind_of(chains)})")
            chains = {}
        return Shape(defaults, self._providers(root), chains, telemetry)

    def _providers(self, root: dict[str, Any]) -> list[dict[str, Any] | None]:
        providers: list[dict[str, Any] | None] = []
        raw = root.get("providers")
        if "providers" not in root:
            self.problems.add(("providers",), "required key 'providers' is missing (the failover chain)")
        elif not isinstance(raw, list):
            self.problems.add(("providers",), f"providers must be a list of provider mappings (got {kind_of(raw)})")
        elif not raw:
            self.problems.add(("providers",), "providers must list at least one provider")
        else:
            for index, item in enumerate(raw):
                path: KeyPath = ("providers", index)
                if not isinstance(item, dict):
                    self.problems.add(path, f"each provider must be a mapping (got {kind_of(item)})")
                    providers.append(None)
                    continue
                entry = self._known(item, PROVIDER_KEYS, path)
                for key in SECTIONS:
                    self._subsection(entry, key, path)
                if entry.get("params") is None:
                    entry.pop("params", None)
                if "api_key" not in entry:
                    self.problems.add(
                        (*path, "api_key"),
                        "required key 'api_key' is missing (write ${VAR} to read it from the environment, "
                        "or any placeholder for a server that needs no key)",
                    )
                providers.append(entry)
        return providers

    def _known(self, mapping: dict[str, Any], valid: tuple[str, ...], path: KeyPath) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in mapping.items():
            if key in valid:
                kept[key] = value
            elif key in COMPUTED_KEYS and valid is PROVIDER_KEYS:
                self.problems.add((*path, key), f"'{key}' is computed from api_key and cannot be set")
            elif valid is DEFAULT_KEYS and key in PROVIDER_KEYS:
                self.problems.add((*path, key), f"'{key}' cannot be set in defaults, only on each provider")
            else:
                self.problems.add((*path, key), f"unknown key '{key}'{suggest(key, valid)}")
        return kept

    def _section(self, parent: dict[str, Any], key: str, valid: tuple[str, ...], path: KeyPath) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:  # absent, or every key commented out
            return {}
        if not isinstance(value, dict):
            self.problems.add((*path, key), f"{key} must be a mapping (got {kind_of(value)})")
            return {}
        return self._known(value, valid, (*path, key))

    def _subsection(self, parent: dict[str, Any], key: str, path: KeyPath) -> None:
        value = parent.get(key)
        if value is None:
            parent.pop(key, None)
        elif isinstance(value, dict):
            parent[key] = kept = self._known(value, tuple(SECTIONS[key].model_fields), (*path, key))
            for sub in NESTED.get(key, ()):
                if sub in kept and kept[sub] is None:  # every key commented out: inherit, as for sections
                    del kept[sub]
        # anything else is left for pydantic, which reports the wrong type at this path

    # --- environment

    def interpolate(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {k: self.interpolate(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.interpolate(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            resolved = interpolate(value, self.env)
        except InterpolationError as exc:
            self.problems.add(path, str(exc))
            return value
        if resolved.refs:
            self.from_env[path] = value_of(value, resolved.refs)
        for name in unique(resolved.unset):
            self.problems.add(path, f"environment variable ${name} is not set (write ${{{name}:-default}} to "
                              "give a default)")
        secret = [name for name in resolved.refs if looks_secret(name)]
        if secret and self._printed_everywhere(path):
            self.problems.add(path, f"must not be read from ${{{secret[0]}}}: its name says it holds a secret, and "
                              f"this value is shown in logs, spans and `failover check`")
        self._unicode(resolved.text, path)
        return resolved.text

    @staticmethod
    def _printed_everywhere(path: KeyPath) -> bool:
        return (path[:1] == ("chains",) or path == ("telemetry", "service_name")
                or (len(path) == 3 and path[0] == "providers" and path[2] in _SHOWN_KEYS))

    def _unicode(self, text: str, path: KeyPath) -> None:
        # A lone surrogate (a `\ud800` escape, an undecodable byte in the environment) cannot be
        # encoded into a request body: every call would fail.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.problems.add(path, "contains a character that is not valid Unicode text (an unpaired surrogate)")

    def api_key(self, entry: dict[str, Any], path: KeyPath) -> None:
        """Resolve `api_key` in place and add `api_key_env` / `missing_env`.

        An unset variable here makes the provider unusable instead of failing the whole file."""
        raw = entry.get("api_key")
        if isinstance(raw, SecretStr):  # a mapping built in code may already hold one
            return
        key_path = (*path, "api_key")
        if raw is None:
            self.problems.add(key_path, "api_key is null (write ${VAR}, or any placeholder for a server that "
                              "needs no key)")
            return
        if not isinstance(raw, str):
            return  # a wrong type: pydantic reports it (without the value)
        try:
            resolved = interpolate(raw, self.env, secret=True)
        except InterpolationError as exc:
            self.problems.add(key_path, str(exc))
            return
        # Surrounding whitespace (a trailing newline from a secrets file) would make an invalid
        # HTTP header deep inside the SDK; no real key has any.
        text = resolved.text.strip()
        missing = unique(resolved.unset)
        if not missing and not text and resolved.refs:
            # Set but empty (`export KEY=`, `${KEY:-}`) is as unusable as unset, and reported the same.
            missing = unique(resolved.empty) or unique(resolved.refs)
        if not resolved.refs and not text:
            self.problems.add(key_path, "api_key is empty")
            return
        entry["api_key"] = None if missing else text
        entry["api_key_env"] = resolved.refs[0] if resolved.refs else None
        entry["missing_env"] = missing
