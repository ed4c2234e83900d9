"""A chaos soak of the router: many concurrent callers under injected faults, counting every broken
promise (wrong text, missed deadlines, unexpected errors, leaks, brownout and outage behaviour).
Run it with `make soak` or `python -m soak --help`; see soak/README.md."""
