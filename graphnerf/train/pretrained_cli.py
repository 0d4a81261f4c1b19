"""The ``graphnerf pretrained`` subcommand (registered by :func:`graphnerf.cli.build_parser`
through :func:`add_pretrained_parser`): list the shipped encoders, show one card, or export a
``graphnerf train`` checkpoint as a shipped encoder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _cmd_pretrained(args: argparse.Namespace) -> int:
    from .pretrained import export_pretrained, headline, list_pretrained
    from .registry import shipped_hint, weights_dir

    if args.export is not None:
        if args.show is not None:
            raise ValueError(f"give either NAME ({args.show}) or --export CKPT --name NAME")
        if not args.name:
            raise ValueError("--export CKPT needs --name NAME (e.g. procedural13-gmn)")
        card = None
        if args.card is not None:
            try:
                card = json.loads(Path(args.card).read_text())
            except (OSError, ValueError) as e:
                raise ValueError(f"{args.card}: not a readable JSON card ({e})") from None
            if not isinstance(card, dict):
                raise ValueError(f"{args.card}: the card must be a JSON object")
        pt = export_pretrained(
            args.export, args.name, args.weights_dir, card, benchmark=args.benchmark
        )
        c = list_pretrained(pt.parent)[args.name]
        print(
            f"wrote {pt} ({_size(c['size_bytes'])}, {c['encoder']['params']['total']:,} "
            f"parameters, sha256 {c['sha256'][:12]}) and {pt.with_suffix('.json').name}"
        )
        for note in c.get("commands_notes") or []:
            print(f"note: {note}")
        return 0
    if args.name is not None:
        raise ValueError("--name goes with --export; to show a card: graphnerf pretrained NAME")

    cards = list_pretrained(args.weights_dir)
    if args.show is not None:
        if args.show not in cards:
            raise FileNotFoundError(
                f"{args.show!r}: no shipped encoder of that name ({shipped_hint(args.weights_dir)})"
            )
        print(json.dumps({k: v for k, v in cards[args.show].items()}, indent=2))
        return 0
    if not cards:
        print(f"{shipped_hint(args.weights_dir)}")
        return 0
    print(f"shipped encoders in {weights_dir(args.weights_dir)}:")
    w = max(len(n) for n in cards)
    for name, c in cards.items():
        enc = c.get("encoder") or {}
        params = (enc.get("params") or {}).get("total")
        tr = c.get("training") or {}
        print(
            f"  {name:{w}s}  {enc.get('kind', '?'):4s}  D={enc.get('embedding_dim', '?')}  "
            f"{'-' if params is None else f'{params / 1e6:.2f}M'} params  "
            f"{_size(c.get('size_bytes'))}  step {tr.get('step', '-')}  {headline(c)}"
        )
    return 0


def add_pretrained_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``pretrained`` to the ``graphnerf`` subcommands."""
    p = sub.add_parser(
        "pretrained",
        help="list the shipped pretrained encoders, show one's model card, or export a "
        "checkpoint as one",
        description="Without arguments: the shipped encoders (name, kind, parameters, size, "
        "headline metrics of the card). NAME: its model card (JSON). --export CKPT --name NAME: "
        "write NAME.pt (the encoder alone, under 20 MB) and NAME.json (model card) into the "
        "weights folder (graphnerf/weights/ of the package, $GRAPHNERF_WEIGHTS_DIR, or "
        "--weights-dir). Every command that takes a checkpoint also takes a shipped NAME.",
    )
    p.add_argument("show", nargs="?", help="print this shipped encoder's model card")
    p.add_argument("--export", metavar="CKPT", help="a graphnerf train checkpoint (best.pt)")
    p.add_argument("--name", help="the shipped name of --export (e.g. procedural13-gmn)")
    p.add_argument(
        "--card", help="JSON object merged into the model card (metrics, description, commands)"
    )
    p.add_argument(
        "--benchmark",
        metavar="RESULTS",
        help="results.json of `graphnerf benchmark CKPT ...`: its metrics go into the card",
    )
    p.add_argument(
        "--weights-dir",
        help="another weights folder (default: $GRAPHNERF_WEIGHTS_DIR, else the package's)",
    )
    p.set_defaults(func=_cmd_pretrained)
