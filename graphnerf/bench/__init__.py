"""Benchmarks of trained encoders: ``graphnerf embed`` and ``graphnerf benchmark``.

* :mod:`~graphnerf.bench.metrics` — recall@k, accuracy, confusion matrix, geodesic error;
* :mod:`~graphnerf.bench.embed` — embedding a zoo, the embeddings file;
* :mod:`~graphnerf.bench.classify` — MLP (gmnerf), linear and 1-NN probes;
* :mod:`~graphnerf.bench.functional` — the functional probe baseline;
* :mod:`~graphnerf.bench.evaluate` — one representation -> classification / retrieval numbers;
* :mod:`~graphnerf.bench.rotation` — relative-rotation error;
* :mod:`~graphnerf.bench.benchmark` — the whole run, ``results.json``;
* :mod:`~graphnerf.bench.report` — ``report.md`` and plots.
"""

from .benchmark import load_bench_config, load_checkpoint, random_init_like, run_benchmark
from .embed import embed_records, read_embeddings, write_embeddings
from .evaluate import evaluate_embeddings
from .metrics import accuracy, confusion_matrix, geodesic_error_deg, recall_at_k, retrieval_hits

__all__ = [
    "accuracy",
    "confusion_matrix",
    "embed_records",
    "evaluate_embeddings",
    "geodesic_error_deg",
    "load_bench_config",
    "load_checkpoint",
    "random_init_like",
    "read_embeddings",
    "recall_at_k",
    "retrieval_hits",
    "run_benchmark",
    "write_embeddings",
]
