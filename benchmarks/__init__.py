"""Benchmarks of failover against the raw SDKs on the built-in emulator: `python -m benchmarks` (`make bench`).

Each figure has its own module; `common.py` holds the emulator child process, the two clients under
test and the timing helpers. See benchmarks/README.md for the latest numbers.
"""
