"""`graphnerf <subcommand>`: the command-line entry point.

Subcommands: ``demo`` (the whole of what works, on the built-in defaults), ``info FILE``,
``render FILE --out x.png``, ``graph FILE``, ``scenes`` (contact sheets of the procedural classes or
the real meshes), ``generate [overrides]`` (a NeRF zoo), ``fit-mesh MESH`` (one NeRF of a mesh
file), ``zoo-info DIR``; ``graphnerf --help`` lists them all. Heavy imports happen inside each
subcommand so that ``graphnerf --help`` is instant. Output paths are checked (known extension,
writable folder) before any work starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

# image formats `render` and `scenes` write, by file extension
IMAGE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def check_output(path: str | Path, suffixes: Sequence[str], what: str) -> Path:
    """Fail fast, before any work, if ``path`` cannot be written as ``what``.

    Checks that the extension is one of ``suffixes`` (case-insensitive), that ``path`` is not a
    folder, and that a file can be created in its folder (created if missing) by creating and
    removing a probe file there. Raises ValueError / OSError with a one-line message naming it.
    """
    import tempfile

    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ValueError(
            f"{p}: cannot write {what} with extension {p.suffix or '(none)'!r}; "
            f"supported: {', '.join(suffixes)}"
        )
    if p.is_dir():
        raise ValueError(f"{p} is a folder; expected a file path for {what}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise OSError(f"{p}: cannot write in {p.parent} ({e.strerror or e})") from None
    return p


def save_image(image, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` image in [0, 1] as PNG or JPEG (quality 95) by the path's extension
    (:data:`IMAGE_FORMATS`), atomically."""
    from .render import save_png

    p = Path(path)
    fmt = IMAGE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"{p}: unsupported image extension; supported: {', '.join(IMAGE_FORMATS)}")
    if fmt == "PNG":
        return save_png(image, p)
    from PIL import Image

    from .atomic import atomic_write
    from .render.image import to_uint8

    pixels = to_uint8(image)
    return atomic_write(p, lambda tmp: Image.fromarray(pixels).save(tmp, format=fmt, quality=95))


def _cmd_info(args: argparse.Namespace) -> int:
    from .fields import arch_name
    from .io import load_any

    field = load_any(args.file, allow_nonfinite=args.allow_nonfinite)
    spec = field.spec
    print(f"file          {args.file}")
    print(f"architecture  {arch_name(spec) or '(custom spec)'}  [family: {spec.family}]")
    print("spec          " + json.dumps(spec.to_dict(), sort_keys=True))
    counts = spec.param_counts()
    for key, n in counts.items():
        print(f"  {key:<20s}{n:>12,d}")
    print(f"  {'total':<20s}{sum(counts.values()):>12,d}")
    print(f"MLP widths    {' -> '.join(map(str, spec.mlp_widths))}  ({spec.activation})")
    if getattr(spec, "family", "") == "hash":
        print(f"hash levels   resolutions {list(map(int, spec.level_resolutions))}")
        print(f"              dense {list(map(bool, spec.level_is_dense))}")
    if field.meta:
        print("metadata")
        for k, v in sorted(field.meta.items()):
            print(f"  {k:<20s}{json.dumps(v)}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    import torch

    from .io import load_any
    from .render import Camera, look_at, render_image, spherical_to_cartesian

    check_output(args.out, tuple(IMAGE_FORMATS), "an image")
    field = load_any(args.file, allow_nonfinite=args.allow_nonfinite).eval()
    eye = spherical_to_cartesian(args.radius, args.azimuth, args.elevation)
    cam = Camera.from_fov(look_at(eye), args.size, args.size, args.fov)
    with torch.no_grad():
        img = render_image(
            field,
            cam,
            n_samples=args.samples,
            background=args.background,
            occupancy=not args.no_skip,
            progress=True,
        )
    out = save_image(img, args.out)
    print(f"wrote {out} ({args.size}x{args.size}, {args.samples} samples per ray)")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from .graph import graph_summary, save_graph, to_graph
    from .io import load_any

    out = Path(args.out) if args.out else Path(args.file).with_suffix(".graph.pt")
    check_output(out, (".pt",), "a graph")
    field = load_any(args.file, allow_nonfinite=args.allow_nonfinite)
    g = to_graph(field, probe_vertices=args.probe_vertices)
    print(graph_summary(g))
    save_graph(g, out)
    print(f"wrote {out}")
    return 0


def _cmd_scenes(args: argparse.Namespace) -> int:
    from .scenes import CLASSES, make_contact_sheet, make_mesh_sheet

    check_output(args.out, (".png",), "a contact sheet")
    if args.meshes:
        out = make_mesh_sheet(
            args.out, rotations=args.seeds, size=args.size, n_samples=args.samples
        )
        print(f"wrote {out} (the packaged real meshes x {args.seeds} rotations)")
        return 0
    classes = args.classes or list(CLASSES)
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; expected some of {list(CLASSES)}")
    seeds = tuple(range(args.seeds))
    out = make_contact_sheet(
        args.out, classes=classes, seeds=seeds, size=args.size, n_samples=args.samples
    )
    print(f"wrote {out} ({len(classes)} classes x {len(seeds)} seeds)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.overrides)


def _cmd_generate(args: argparse.Namespace) -> int:
    from .data import generate, load_zoo_config

    cfg = load_zoo_config(args.overrides, args.config)
    generate(cfg, shard=args.shard, progress=not args.no_progress)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.loop import train_main

    return train_main(args.overrides, show_progress=not args.no_progress)


def _cmd_fit_mesh(args: argparse.Namespace) -> int:
    from .data import fit_mesh, load_zoo_config

    cfg = load_zoo_config(args.overrides, args.config)
    print(f"up axis       {_up_axis_note(args.mesh, args.up)}")
    meta = fit_mesh(
        args.mesh,
        arch=args.arch,
        rotation=args.rotation,
        seed=args.seed,
        out=args.out,
        cfg=cfg,
        grid_resolution=args.grid_resolution,
        progress=not args.no_progress,
        up=args.up,
    )
    views = ", ".join("-" if v is None else f"{v:.2f}" for v in meta["psnr_views"])
    psnr = "-" if meta["psnr"] is None else f"{meta['psnr']:.2f}"
    print(
        f"wrote {meta['out']}  ({meta['arch']}, rotation {[round(v, 4) for v in meta['rotation']]})"
    )
    print(f"psnr          {psnr} dB  (views: {views})")
    if meta.get("psnr_fg") is not None:  # object pixels only; coverage = object share of frame
        print(f"psnr_fg       {meta['psnr_fg']:.2f} dB  (coverage {meta['coverage']:.3f})")
    print(f"iou           {meta['iou']:.3f}")
    print(
        f"fit           {meta['steps']} steps, {meta['seconds']:.1f} s, final loss {meta['loss']:.4g}"
    )
    return 0


def _up_axis_note(mesh: str, up: str | None) -> str:
    """Which axis fit-mesh stands the mesh on, and why (given / registry / format convention)."""
    from .scenes import REAL_MESHES, default_up

    if up is not None:
        return f"{up} (--up)"
    if not Path(mesh).exists() and mesh in REAL_MESHES:
        return f"{REAL_MESHES[mesh].up} (the packaged mesh's)"
    suffix = Path(mesh).suffix.lower() or "(no suffix)"
    return f"{default_up(mesh)} (the {suffix} convention; --up y / --up z if it lies on its side)"


def _cmd_zoo_info(args: argparse.Namespace) -> int:
    from .data import format_summary, make_plan, read_manifest, summarize

    root = Path(args.dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such zoo folder")
    records = read_manifest(root)
    planned = None
    config = root / "config.yaml"
    if config.is_file():  # progress against the plan that made the zoo, when it is known
        from omegaconf import OmegaConf

        try:
            planned = [job.id for job in make_plan(OmegaConf.load(config)).jobs]
        except (ValueError, TypeError, OSError) as e:
            print(f"note: {config} does not give a plan ({e}); counts only", file=sys.stderr)
    summary = summarize(records, root, planned)
    print(format_summary(summary))
    return 1 if summary["missing_files"] else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="graphnerf",
        description="Weight-space learning on NeRFs of many architectures.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    from .demo import DESCRIPTION as DEMO_DESCRIPTION  # graphnerf/demo.py owns the demo's text
    from .demo import HELP as DEMO_HELP

    d = sub.add_parser(
        "demo",
        help=DEMO_HELP,
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("overrides", nargs="*", help="config overrides key=value (configs/demo.yaml)")
    d.set_defaults(func=_cmd_demo)

    def add_file(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help="a .safetensors field or a tcnn/gmnerf .pth checkpoint")
        sp.add_argument(
            "--allow-nonfinite", action="store_true", help="load even with NaN/inf weights"
        )

    i = sub.add_parser("info", help="architecture, parameter counts and metadata of a NeRF file")
    add_file(i)
    i.set_defaults(func=_cmd_info)

    r = sub.add_parser("render", help="render a NeRF file to an image (PNG or JPEG)")
    add_file(r)
    r.add_argument(
        "--out",
        required=True,
        help=f"output image ({', '.join(IMAGE_FORMATS)}); checked before rendering",
    )
    r.add_argument("--size", type=int, default=256, help="image height and width (pixels)")
    r.add_argument("--samples", type=int, default=192, help="samples per ray")
    r.add_argument("--azimuth", type=float, default=45.0, help="camera azimuth (degrees)")
    r.add_argument("--elevation", type=float, default=25.0, help="camera elevation (degrees)")
    r.add_argument("--radius", type=float, default=2.2, help="camera distance (world units)")
    r.add_argument("--fov", type=float, default=40.0, help="vertical field of view (degrees)")
    r.add_argument("--background", type=float, default=1.0, help="background grey level")
    r.add_argument(
        "--no-skip",
        action="store_true",
        help="evaluate every sample (the plain renderer) instead of skipping empty space "
        "with an occupancy grid of the field (same image, several times slower)",
    )
    r.set_defaults(func=_cmd_render)

    g = sub.add_parser("graph", help="convert a NeRF file to its parameter graph")
    add_file(g)
    g.add_argument("--out", help="output .pt (default: FILE with suffix .graph.pt)")
    g.add_argument(
        "--probe-vertices",
        type=int,
        default=None,
        metavar="N",
        help="hash grids: add an N^3 lattice of probe vertices (0: none; default: the family's)",
    )
    g.set_defaults(func=_cmd_graph)

    sc = sub.add_parser(
        "scenes", help="contact sheet of the procedural shape classes or the real meshes (PNG)"
    )
    sc.add_argument("--out", default="scenes.png", help="output PNG path")
    sc.add_argument("--classes", nargs="*", help="class names (default: all 13)")
    sc.add_argument(
        "--seeds", type=int, default=4, help="instances per class (seeds 0..n-1) or rotations"
    )
    sc.add_argument(
        "--meshes",
        action="store_true",
        help="the packaged real meshes (pip install 'graphnerf[meshes]'), one per row, "
        "as they stand then under random rotations",
    )
    sc.add_argument("--size", type=int, default=96, help="tile size (pixels)")
    sc.add_argument("--samples", type=int, default=96, help="samples per ray")
    sc.set_defaults(func=_cmd_scenes)

    def add_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            default="default",
            help="zoo config name in configs/data/ (default: default; tiny: a seconds-long zoo)",
        )
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")
        sp.add_argument(
            "overrides",
            nargs="*",
            help="Hydra overrides key=value of configs/data/<config>.yaml (write them together: "
            "all options before or after them, argparse cannot interleave)",
        )

    gen = sub.add_parser(
        "generate",
        help="fit a zoo of NeRFs (objects x rotations x archs); resumable, shardable",
        description="Generate the NeRF zoo described by configs/data/<config>.yaml with Hydra "
        "overrides, e.g. `graphnerf generate out_dir=zoo classes=[chair,table] "
        "objects_per_class=2 rotations=2 fit.distill.common.steps=200`. Rerunning the same "
        "command resumes; shards (--shard i/n, or RANK/WORLD_SIZE under torchrun) may write "
        "into the same folder at once.",
    )
    gen.add_argument("--shard", help="i/n: run batches b with b %% n == i (default: all)")
    add_config(gen)
    gen.set_defaults(func=_cmd_generate)

    fm = sub.add_parser(
        "fit-mesh",
        help="fit one NeRF to a mesh file (OBJ, PLY, STL, OFF, GLB, ...), evaluate and save it",
        description="Fit one NeRF to a mesh (placed in the AABB; a non-watertight mesh warns and "
        "uses a voxel fill), print its PSNR / IoU and save it with the metrics in its metadata. "
        "Fit budgets come from the zoo config (overrides such as fit.distill.common.steps=300).",
    )
    fm.add_argument(
        "mesh",
        help="mesh file, or the name of a packaged real mesh such as duck "
        "(graphnerf.scenes.REAL_MESHES; pip install 'graphnerf[meshes]')",
    )
    fm.add_argument(
        "--up",
        choices=("z", "y"),
        help="axis the object stands on in the file; graphnerf's world is z-up and a y-up mesh "
        "is turned. Default: the format's convention (OBJ, glTF/GLB: y; STL, PLY, OFF: z), or "
        "the registry's for a packaged mesh's name. Give it when a file breaks the convention "
        "(the object lies on its side in the render)",
    )
    fm.add_argument("--arch", default="hash", help="zoo architecture (default: hash)")
    fm.add_argument(
        "--rotation",
        default="identity",
        help="identity (default), random (seeded by --seed) or a quaternion w,x,y,z",
    )
    fm.add_argument("--seed", type=int, default=0, help="init / rotation / fit seed (default 0)")
    fm.add_argument("--out", help="output .safetensors (default: <mesh stem>_<arch>.safetensors)")
    fm.add_argument(
        "--grid-resolution",
        type=int,
        help="watertight meshes: precompute occupancy on this grid (faster, approximate)",
    )
    add_config(fm)
    fm.set_defaults(func=_cmd_fit_mesh)

    zi = sub.add_parser(
        "zoo-info",
        help="counts per split / class / arch, PSNR distribution and missing files of a zoo",
        description="Read DIR/manifest.jsonl; print counts and PSNR / IoU distributions, progress "
        "against the plan in DIR/config.yaml, and files missing on disk (exit status 1 then).",
    )
    zi.add_argument("dir", help="zoo folder (holds manifest.jsonl)")
    zi.set_defaults(func=_cmd_zoo_info)

    tr = sub.add_parser(
        "train",
        help="train an encoder (GMN or SANE) on a zoo; resumable, DDP under torchrun",
        description="Train with configs/train/default.yaml and Hydra overrides, e.g. `graphnerf "
        "train zoo=ZOO out_dir=RUN model=gmn loss=rec_con train.steps=1000` (loss: rec, con, "
        "rec_con, rec_con_rot, sane_ngp; data.train_archs=[mlp,triplane] for leave-one-out). "
        "resume=true continues RUN exactly; `torchrun --nproc_per_node 2 -m graphnerf train ...` "
        "runs DDP.",
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("overrides", nargs="*", help="Hydra overrides key=value of configs/train/")
    tr.set_defaults(func=_cmd_train)

    from .bench.cli import add_bench_parsers  # embed, benchmark (graphnerf/bench/cli.py)

    add_bench_parsers(sub)
    from .train.pretrained_cli import add_pretrained_parser  # graphnerf/train/pretrained_cli.py

    add_pretrained_parser(sub)
    from .experiment.cli import add_experiment_parser  # graphnerf/experiment/cli.py

    add_experiment_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"graphnerf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
