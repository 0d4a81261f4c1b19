"""The ``graphnerf experiment`` subcommand (registered by :mod:`graphnerf.cli`)."""

from __future__ import annotations

import argparse


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .stages import run_experiment

    run_experiment(args.overrides)
    return 0


def add_experiment_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``experiment`` to the ``graphnerf`` subcommands."""
    ex = sub.add_parser(
        "experiment",
        help="zoo -> training -> benchmarks -> RUN/report.md in one resumable command",
        description="Run configs/experiment/<name>.yaml (experiment=procedural13 by default) into "
        "out_dir=RUN: generate the zoo, train every run (GMN, SANE, leave-one-family-out), "
        "benchmark each on the held-out objects, write RUN/report.md and RUN/results.json. Every "
        "stage resumes where it stopped; rerunning a finished stage is a no-op; only=[train/sane] "
        "runs chosen stages (several processes may share one RUN); scale.objects=4 "
        "scale.rotations=2 scale.steps=4 grow it. Stage times go to RUN/stages.json.",
    )
    ex.add_argument(
        "overrides", nargs="*", help="experiment=NAME and key=value of configs/experiment/NAME"
    )
    ex.set_defaults(func=_cmd_experiment)
