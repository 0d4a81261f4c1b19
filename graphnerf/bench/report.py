"""``DIR/report.md`` and its plots (matplotlib, Agg backend; PNGs written atomically).

Plots: t-SNE of the model's test embeddings coloured by class and by architecture, the MLP
probe's confusion matrix, recall@1 heat-maps over architecture pairs (model and baselines side by
side), the rotation-error histogram, and query renders beside their top-3 retrieved NeRFs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text

__all__ = ["write_report"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.1f}"


def plot_tsne(
    embeddings: Mapping[str, np.ndarray],
    classes: Sequence[str],
    archs: Sequence[str],
    seed: int,
    path: Path,
) -> str:
    """t-SNE (cosine metric) of each representation's ``[N, D]`` test embeddings, one row each,
    coloured by class (left) and by architecture (right)."""
    from sklearn.manifold import TSNE

    plt = _plt()
    rows = list(embeddings.items())
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 4.8 * len(rows)), squeeze=False)
    for r, (rep, z) in enumerate(rows):
        n = len(z)
        perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
        xy = TSNE(
            2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine"
        ).fit_transform(np.asarray(z, dtype=np.float64))
        for ax, labels, title in ((axes[r][0], classes, "class"), (axes[r][1], archs, "arch")):
            names = list(dict.fromkeys(labels))
            cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
            lab = np.asarray(labels)
            for i, name in enumerate(names):
                m = lab == name
                ax.scatter(xy[m, 0], xy[m, 1], s=18, color=cmap(i % cmap.N), label=name, alpha=0.85)
            ax.set_title(f"{rep}: t-SNE of test embeddings, by {title}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, loc="best", markerscale=0.8)
    return _save(fig, path)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], title: str, path: Path) -> str:
    plt = _plt()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * k, 1.0 + 0.5 * k))
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, np.maximum(rows, 1))
    ax.imshow(frac, vmin=0, vmax=1, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_recall_maps(maps: Mapping[str, np.ndarray], archs: Sequence[str], path: Path) -> str:
    """One recall@1 heat-map (rows: query arch, columns: gallery arch) per representation."""
    plt = _plt()
    n, k = len(maps), len(archs)
    side = 1.5 + 0.45 * k
    fig, axes = plt.subplots(1, n, figsize=(side * n, side), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(np.nan_to_num(m, nan=0.0), vmin=0, vmax=1, cmap="viridis")
        for i in range(k):
            for j in range(k):
                txt = "-" if not np.isfinite(m[i, j]) else f"{100 * m[i, j]:.0f}"
                ax.text(
                    j,
                    i,
                    txt,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if np.nan_to_num(m[i, j]) > 0.6 else "white",
                )
        ax.set_xticks(range(k), archs, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), archs if ax is axes[0][0] else [""] * k, fontsize=7)
        ax.set_title(f"{name}: recall@1 (%)", fontsize=9)
        ax.set_xlabel("gallery arch", fontsize=8)
    axes[0][0].set_ylabel("query arch", fontsize=8)
    return _save(fig, path)


def plot_rotation(errors: Mapping[str, np.ndarray], path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 180, 37)
    for i, (name, e) in enumerate(errors.items()):
        ax.hist(
            e,
            bins=bins,
            histtype="step",
            linewidth=1.6,
            linestyle=("-", "--", ":", "-.")[i % 4],  # overlapping curves stay visible
            label=f"{name} (median {np.median(e):.1f} deg, n={len(e)})",
        )
    ax.set_xlabel("geodesic error of the predicted relative rotation (degrees)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_retrievals(
    zoo: Path,
    records: Sequence[Mapping[str, Any]],
    z: np.ndarray,
    test_idx: np.ndarray,
    n_queries: int,
    top: int,
    size: int,
    n_samples: int,
    seed: int,
    path: Path,
) -> str:
    """Renders of ``n_queries`` test NeRFs (first column) and of their ``top`` nearest test NeRFs
    of *other* architectures (cosine); a green title = same object, red = another object."""
    import torch

    from ..render import eval_cameras, render_image
    from .embed import _load_field
    from .metrics import cosine_similarity_matrix

    plt = _plt()
    rng = np.random.default_rng(seed)
    # queries: one per object where possible, spread over the archs
    q = rng.permutation(test_idx)
    seen_obj: set[str] = set()
    picks = []
    for i in q:
        o = str(records[i]["object"])
        if o not in seen_obj:
            seen_obj.add(o)
            picks.append(int(i))
        if len(picks) == n_queries:
            break
    sim = cosine_similarity_matrix(z[picks], z[test_idx]).numpy()
    cam = eval_cameras(size, size)[0]
    cache: dict[int, np.ndarray] = {}

    def render(i: int) -> np.ndarray:
        if i not in cache:
            f = _load_field(zoo, dict(records[i]))
            with torch.no_grad():
                cache[i] = (
                    render_image(f, cam, n_samples=n_samples, occupancy=False).clamp(0, 1).numpy()
                )
        return cache[i]

    fig, axes = plt.subplots(
        len(picks), top + 1, figsize=(1.9 * (top + 1), 2.1 * len(picks)), squeeze=False
    )
    for row, qi in enumerate(picks):
        qa = records[qi]["arch"]
        order = np.argsort(-sim[row], kind="stable")
        hits = [int(test_idx[j]) for j in order if records[int(test_idx[j])]["arch"] != qa][:top]
        cells = [(qi, f"query\n{records[qi]['object']}\n{qa}", "black")]
        for h in hits:
            same = records[h]["object"] == records[qi]["object"]
            cells.append(
                (h, f"{records[h]['object']}\n{records[h]['arch']}", "green" if same else "red")
            )
        for col in range(top + 1):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(cells):
                i, title, colour = cells[col]
                ax.imshow(render(i))
                ax.set_title(title, fontsize=7, color=colour)
    return _save(fig, path)


def _main_table(results: Mapping[str, Any]) -> list[str]:
    rows = [("model", results)] + list(results.get("baselines", {}).items())
    lines = [
        "| representation | MLP acc seen | MLP acc unseen | linear seen / unseen | 1-NN seen / unseen "
        "| mean R@1 (cross-arch) | mean R@1 (cross-arch, other rotation) | R@1 across rotations "
        "| rotation median (deg) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        c, rt, rot = r["classification"], r["retrieval"], r["rotation"]
        lin, nn1 = c["probes"]["linear"], c["probes"]["knn1"]
        lines.append(
            f"| {name} | {_fmt(c['seen'])} | {_fmt(c['unseen'])} | {_fmt(lin['seen'])} / "
            f"{_fmt(lin['unseen'])} | {_fmt(nn1['seen'])} / {_fmt(nn1['unseen'])} | "
            f"{_fmt(rt['mean_recall_at_1'])} | {_fmt(rt['mean_recall_at_1_other_rotation'])} | "
            f"{_fmt(rt['across_rotations_mean'])} | "
            f"{_fmt(rot['median_deg'], pct=False)} |"
        )
    return lines


def write_report(
    out_dir: Path,
    results: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    reps: Mapping[str, Mapping[str, Any]],
    extras: Mapping[str, Mapping[str, Any]],
    zoo: Path,
    cfg: Mapping[str, Any],
    seed: int,
    identity_errors: np.ndarray | None = None,
) -> dict[str, str]:
    """Write the PNGs and ``report.md``; returns ``{plot: file name}``."""
    rcfg = cfg.get("report", {})
    ext = extras["model"]
    te = np.flatnonzero(ext["test_mask"])
    z = np.asarray(reps["model"]["embeddings"])
    plots: dict[str, str] = {}
    classes = [str(records[i]["class"]) for i in te]
    archs = [str(records[i]["arch"]) for i in te]
    if len(te) >= 5:
        shown = {"model": z[te]}
        if "functional_probe" in reps:  # the bar, for comparison
            shown["functional_probe"] = np.asarray(reps["functional_probe"]["embeddings"])[te]
        plots["tsne"] = plot_tsne(shown, classes, archs, seed, out_dir / "tsne.png")
    plots["confusion"] = plot_confusion(
        ext["confusion"],
        ext["classes"],
        "MLP probe on the model's embeddings (test split)",
        out_dir / "confusion.png",
    )
    plots["recall"] = plot_recall_maps(
        {n: e["recall_at_1_matrix"] for n, e in extras.items()},
        ext["archs"],
        out_dir / "recall_at_1.png",
    )
    errs = {n: r["errors"] for n, r in reps.items() if r.get("errors") is not None}
    rot = results["rotation"]
    if errs and identity_errors is not None:
        errs["predict identity"] = np.asarray(identity_errors)
    if errs:
        plots["rotation"] = plot_rotation(errs, out_dir / "rotation_error.png")
    if int(rcfg.get("n_queries", 4)) > 0 and len(te) > 1:
        plots["retrievals"] = plot_retrievals(
            zoo,
            records,
            z,
            te,
            int(rcfg.get("n_queries", 4)),
            int(rcfg.get("top", 3)),
            int(rcfg.get("render_size", 64)),
            int(rcfg.get("render_samples", 64)),
            seed,
            out_dir / "retrievals.png",
        )

    c, rt = results["classification"], results["retrieval"]
    zs = results["zoo"]
    lines = [
        "# graphnerf benchmark",
        "",
        f"Checkpoint `{results['checkpoint'] or '(in memory)'}` "
        f"(sha256 `{(results.get('checkpoint_hash') or '-')[:16]}`), encoder "
        f"`{results['model']['name']}`, embedding dim {results['model']['embedding_dim']}, "
        f"trained on {results['model']['train_archs'] or 'unknown archs (assumed mlp, triplane, hash)'}.",
        f"Zoo `{zs['path']}`: {zs['nerfs']} NeRFs, {zs['objects']} objects, "
        f"{len(zs['classes'])} classes; train {zs['splits'].get('train', {}).get('nerfs', 0)}, "
        f"test {zs['splits'].get('test', {}).get('nerfs', 0)} NeRFs. Seed {seed}.",
        "",
        "Accuracies and recalls in %, chance accuracy "
        f"{100 * c['chance']:.1f}%. Probes are fitted on the train split's embeddings, scored on the "
        "test split's; `seen` = mean over the training architectures, `unseen` = mean over the "
        "others present. Mean R@1 = mean over the cross-architecture pairs of mlp / triplane / "
        "hash; *other rotation*: the same pairs with the query's object under the query's "
        "rotation left out of the gallery (only its other rotations count); R@1 across rotations "
        "= same architecture, the query left out (its other rotations are the only positives). Every row is computed by the same code.",
        "",
        *_main_table(results),
        "",
    ]
    lines.append(f"- `model`: {results['model']['description']}")
    for name, r in results.get("baselines", {}).items():
        lines.append(f"- `{name}`: {r.get('description', '')}")
    lines.append(
        f"- chance: accuracy {100 * c['chance']:.1f}%, mean R@1 (cross-arch) "
        f"{_fmt(rt.get('chance_mean_recall_at_1'))}%, other rotation "
        f"{_fmt(rt.get('chance_mean_recall_at_1_other_rotation'))}% (a random ranking)"
    )
    n_arch = [int((np.asarray([records[i]["arch"] for i in te]) == a).sum()) for a in ext["archs"]]
    lines += [
        "",
        "## Classification per architecture (MLP probe, %)",
        "",
        "Test NeRFs per architecture: "
        + ", ".join(f"{a} {n}" for a, n in zip(ext["archs"], n_arch, strict=True))
        + " (one NeRF moves an accuracy by 100/n points).",
        "",
    ]
    head = ["representation", *ext["archs"]]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(ext["archs"])]
    for name, r in [("model", results), *results.get("baselines", {}).items()]:
        pa = r["classification"]["per_arch"]
        lines.append(f"| {name} | " + " | ".join(_fmt(pa.get(a)) for a in ext["archs"]) + " |")
    if results.get("held_out_family"):
        lines += ["", "## Held-out family", ""]
        for fam, h in results["held_out_family"].items():
            lines.append(
                f"- `{fam}` ({', '.join(h['archs'])}): MLP accuracy {_fmt(h['accuracy'])}%, "
                f"mean recall@1 of the pairs involving it {_fmt(h['mean_recall_at_1'])}%"
            )
    lines += [
        "",
        "## Rotation",
        "",
        (
            f"Median geodesic error {rot['median_deg']:.1f} deg, mean {rot['mean_deg']:.1f} deg over "
            f"{rot['n_pairs']} same-object pairs of test NeRFs; always predicting the identity "
            f"gives a median of {rot.get('identity_median_deg', float('nan')):.1f} deg."
            if rot["median_deg"] is not None
            else "The model has no rotation head (or the test split has no pairs)."
        ),
        "",
        "## Plots",
        "",
    ]
    captions = {
        "tsne": "t-SNE of the test embeddings, by class (left) and by architecture (right); "
        "model, then the functional probe",
        "confusion": "confusion matrix of the MLP probe (test split, all architectures)",
        "recall": "recall@1 over (query arch, gallery arch) pairs, model and baselines",
        "rotation": "rotation error histogram",
        "retrievals": "queries (left) and their top-3 NeRFs of other architectures "
        "(green: same object)",
    }
    for k, f in plots.items():
        lines += [f"![{captions[k]}]({f})", "", f"*{captions[k]}*", ""]
    lines.append(
        f"Recall@1 / @5 per pair and everything else: `results.json`. R@1 cross-arch over all "
        f"test archs: {_fmt(rt.get('cross_arch_mean_recall_at_1'))}%."
    )
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return plots
