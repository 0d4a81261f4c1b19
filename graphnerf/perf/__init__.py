"""Speed and memory benchmarks behind `scripts/bench.py` (never timed unit tests)."""
