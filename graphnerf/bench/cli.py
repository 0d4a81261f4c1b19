"""The ``graphnerf embed`` and ``graphnerf benchmark`` subcommands (registered by
:func:`graphnerf.cli.build_parser` through :func:`add_bench_parsers`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_embed(args: argparse.Namespace) -> int:
    from .benchmark import load_checkpoint
    from .embed import (
        default_cache_dir,
        embed_records,
        load_zoo_records,
        select_split,
        write_embeddings,
    )

    out = Path(args.out)
    if out.suffix.lower() != ".safetensors":
        raise ValueError(f"{out}: the embeddings file must end in .safetensors")
    records = select_split(load_zoo_records(args.zoo), args.split, args.zoo)
    encoder = load_checkpoint(args.checkpoint)
    cache = args.cache_dir or default_cache_dir(args.zoo)
    z = embed_records(
        encoder, args.zoo, records, args.batch_size, cache, show_progress=not args.no_progress
    )
    write_embeddings(
        out,
        z,
        [str(r["id"]) for r in records],
        checkpoint=str(args.checkpoint),
        checkpoint_hash=encoder.checkpoint_hash,
        encoder=encoder.name,
        model_config=encoder.config,
        zoo=str(args.zoo),
        split=args.split,
    )
    print(f"wrote {out}  ({z.shape[0]} NeRFs x {z.shape[1]} dims, split {args.split})")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark

    res = run_benchmark(
        args.checkpoint,
        args.zoo,
        args.out,
        baseline=args.baseline,
        baseline_name=args.baseline_name,
        seed=args.seed,
        overrides=args.overrides,
        embeddings=args.embeddings,
        show_progress=not args.no_progress,
    )

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:5.1f}%"

    rows = [("model", res)] + list(res["baselines"].items())
    print(f"{'':18s} {'acc seen':>9s} {'unseen':>7s} {'R@1 x-arch':>11s} {'rot median':>11s}")
    for name, r in rows:
        rot = r["rotation"]["median_deg"]
        print(
            f"{name:18s} {pct(r['classification']['seen']):>9s} "
            f"{pct(r['classification']['unseen']):>7s} "
            f"{pct(r['retrieval']['mean_recall_at_1']):>11s} "
            f"{'-' if rot is None else f'{rot:.1f} deg':>11s}"
        )
    print(f"wrote {Path(args.out) / 'results.json'} and report.md ({res['wall_s']:.0f} s)")
    return 0


def add_bench_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``embed`` and ``benchmark`` to the ``graphnerf`` subcommands."""
    e = sub.add_parser(
        "embed",
        help="embed every NeRF of a zoo (or one split) with a trained encoder (.safetensors)",
        description="Write FILE.safetensors: tensor `embeddings` [N, D] float32; header metadata "
        "`ids` (JSON list of the manifest ids in row order), the checkpoint path and sha256, the "
        "model config. Parameter graphs come from the zoo's graph cache.",
    )
    e.add_argument("checkpoint", help="encoder checkpoint (graphnerf train: RUN/checkpoints/*.pt)")
    e.add_argument("zoo", help="zoo folder (holds manifest.jsonl)")
    e.add_argument("--out", required=True, help="output FILE.safetensors")
    e.add_argument("--split", default="test", help="train, val, test or all (default: test)")
    e.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="NeRFs per encoder call (default 1: embeddings bit-identical to the benchmark's; "
        "larger batches suit a GPU and move them by ~1e-7)",
    )
    e.add_argument("--cache-dir", help="parameter-graph cache (default: ZOO/.cache/graphs)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_embed)

    b = sub.add_parser(
        "benchmark",
        help="classification, cross-arch retrieval, rotation error + baselines: results.json, "
        "report.md with plots",
        description="Score a trained encoder on a zoo's test split (probes fitted on its train "
        "split) beside a random-init encoder of the same config, the functional probe "
        "(density + colour on a 16^3 grid, PCA) and --baseline CKPT; write DIR/results.json, "
        "DIR/report.md, its PNGs and DIR/embeddings.safetensors. Overrides: key=value of "
        "configs/bench/default.yaml.",
    )
    b.add_argument("checkpoint", help="encoder checkpoint")
    b.add_argument("zoo", help="zoo folder with a train and a test split")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--baseline", help="a second checkpoint scored by the same code")
    b.add_argument(
        "--baseline-name",
        default="baseline",
        help="its key under baselines.<name> (default: baseline)",
    )
    b.add_argument("--seed", type=int, help="seed of probes, random init, pairs (default: 0)")
    b.add_argument(
        "--embeddings", help="reuse a `graphnerf embed --split all` file of this checkpoint"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.add_argument(
        "overrides",
        nargs="*",
        help="key=value of configs/bench/default.yaml, written right after ZOO (argparse "
        "cannot interleave them with options), e.g. classification.mlp.epochs=50",
    )
    b.set_defaults(func=_cmd_benchmark)
