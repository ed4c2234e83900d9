"""OpenTelemetry spans and metrics for every call (DESIGN §7).

- `semconv`: every name (GenAI semantic conventions and failover's own);
- `observer`: one call's spans and metrics, from the planner's events;
- `sdk`: installing the SDK with a console or OTLP exporter, for the CLI and a config whose
  `telemetry.exporter` is not `none`. A plain import never installs anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import context as otel_context

from failover.errors import ConfigError
from failover.redact import Scrubber
from failover.telemetry.observer import TracingObserver, instruments

if TYPE_CHECKING:
    from failover.config import Config, TelemetrySettings

__all__ = ["Telemetry", "TracingObserver"]


class Telemetry:
    """A router's telemetry: one `TracingObserver` per call.

    It always emits through the global OpenTelemetry API (non-recording unless an SDK is installed);
    with `exporter: console | otlp` it first installs the SDK (`sdk.setup_telemetry`, which never
    replaces a provider the application installed).
    """

    def __init__(self, settings: TelemetrySettings, *, scrubber: Scrubber | None = None) -> None:
        self.settings = settings
        self.capture_content = settings.capture_content
        self.scrubber = scrubber or Scrubber()
        if settings.exporter != "none":
            from failover.telemetry.sdk import setup_telemetry

            setup_telemetry(settings)
        self._instruments = instruments()

    @classmethod
    def for_config(cls, config: Config, scrubber: Scrubber) -> Telemetry:
        try:
            return cls(config.telemetry, scrubber=scrubber)
        except RuntimeError as e:  # the SDK or the exporter package is not installed
            raise ConfigError(str(e), source=config.source, path="telemetry.exporter") from e

    def observer(self) -> TracingObserver:
        """A fresh observer for one call; the caller's current context becomes the call span's parent."""
        return TracingObserver(self._instruments, otel_context.get_current(), scrubber=self.scrubber,
                               capture_content=self.capture_content)
