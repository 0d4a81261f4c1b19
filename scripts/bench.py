#!/usr/bin/env python
"""Benchmarks (speed and memory targets live here, never in unit tests).

python scripts/bench.py fields [--points 65536] [--out bench_out/fields.json]
python scripts/bench.py graph  [--out bench_out/graph.json]
"""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "fields": "graphnerf.perf.fields",
    "graph": "graphnerf.perf.graph",
    "fit": "graphnerf.perf.fit",
    "encoders": "graphnerf.perf.encoders",
    "probes": "graphnerf.perf.probes",
    "render": "graphnerf.perf.render",
    "train": "graphnerf.perf.train",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUITES:
        print(__doc__)
        print(f"suites: {', '.join(SUITES)}")
        return 2
    return importlib.import_module(SUITES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
