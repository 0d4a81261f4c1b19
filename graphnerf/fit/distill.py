"""3D distillation: fit a :class:`~graphnerf.fields.RadianceField` to a scene point by point.

A scene is any callable ``scene(x [N, 3]) -> (sigma [N], rgb [N, 3])`` in world coordinates (a
``graphnerf.scenes`` Scene, another field, a lambda); when it has an ``occupancy(x) -> bool [N]``
method that defines its surface, otherwise a point is occupied where its alpha over the standard
step exceeds 1/2 (see :func:`standard_step`).

No rendering is involved: the scene is sampled once (:class:`SceneSamples`: points uniform in the
AABB plus points jittered around the cells of an occupancy grid where occupancy changes, so that
the scene is queried a fixed number of times however long the fit), then each step draws a batch
of those points and minimises

* the colour MSE weighted by the larger of the scene's and the field's alpha (the colour of space
  empty in both is irrelevant; where only the field is opaque its colour shows in renders), with
  a weight ``w_rgb`` large enough that colour is not sacrificed to the density terms (at weight
  1 a hash grid's colour collapsed towards a noisy mean),
* the MSE on alpha ``1 - exp(-sigma * step)`` with the standard step (what rendering sees),
* a small MSE of ``log(sigma + eps)`` against the target's ``clamp(log(sigma_t + eps), log eps,
  log sigma_max)``: alpha is flat near 0 and near 1, so without it empty space keeps a faint fog
  that costs 10-15 dB once integrated along whole rays, and dense floaters get no gradient.

with Adam (learning rates decaying exponentially), while the first-layer weights of frequencies the
sampling cannot resolve are held at zero (:class:`BandLimit`). Defaults (steps, learning rates,
batch sizes, loss weights) come from the ``fit`` Hydra config group, per field family:
``graphnerf/configs/fit/default.yaml``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ..fields import RadianceField

__all__ = [
    "STEP_DIVISOR",
    "BandLimit",
    "DistillConfig",
    "FitResult",
    "SceneSamples",
    "alpha",
    "distill",
    "distill_loss",
    "fit_config",
    "grid_centres",
    "make_optimizer",
    "query_scene",
    "resolve_generator",
    "scene_occupancy",
    "set_lr",
    "split_params",
    "standard_step",
]

#: The standard step is the AABB diagonal divided by this (128 samples across the box).
STEP_DIVISOR = 128
#: Points per call of a scene while sampling it.
QUERY_CHUNK = 65536

#: Where the colour loss counts (see :func:`distill_loss`).
RGB_WEIGHTS = ("target", "either")

SceneFn = Callable[[Tensor], tuple[Tensor, Tensor]]


# ----------------------------------------------------------------------------- results and config
@dataclass
class FitResult:
    """Outcome of one fit.

    Attributes:
        loss_history: training loss after each step (the total of the weighted terms).
        seconds: wall time of the call; for batched fits the call's time divided by
            ``batch_size`` (amortised per field).
        steps: optimisation steps taken.
        batch_size: number of fields fitted together in the call (1 for :func:`distill`).
    """

    loss_history: list[float]
    seconds: float
    steps: int
    batch_size: int = 1

    @property
    def final_loss(self) -> float:
        return self.loss_history[-1] if self.loss_history else math.nan


@dataclass(frozen=True)
class DistillConfig:
    """Settings of a 3D distillation (one family's block of ``fit.distill``; see the YAML)."""

    steps: int
    batch_points: int
    surface_fraction: float
    lr: float
    grid_lr: float
    lr_final: float
    betas: tuple[float, float]
    adam_eps: float
    band_limit: int | None
    w_rgb: float
    rgb_weight: str
    w_alpha: float
    w_log_sigma: float
    sigma_eps: float
    sigma_max: float
    cache_uniform: int
    cache_surface: int
    surface_grid: int
    surface_jitter: float

    def __post_init__(self) -> None:
        check_positive(self, "steps", "batch_points", "lr", "sigma_eps", "sigma_max")
        check_positive(self, "cache_uniform", "surface_grid")
        if not 0.0 <= self.surface_fraction <= 1.0:
            raise ValueError(f"surface_fraction must be in [0, 1], got {self.surface_fraction}")
        if self.rgb_weight not in RGB_WEIGHTS:
            raise ValueError(f"rgb_weight must be one of {RGB_WEIGHTS}, got {self.rgb_weight!r}")
        if self.cache_surface < 1 and self.surface_fraction > 0:
            raise ValueError("cache_surface must be >= 1 when surface_fraction > 0")


C = TypeVar("C")


def check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be > 0, got {value!r}")


@functools.lru_cache(maxsize=1)
def _default_fit_config() -> DictConfig:
    from ..config import load_config

    return load_config("fit/default")


def fit_config(cls: type[C], cfg: C | DictConfig | Mapping | None, section: str, family: str) -> C:
    """One family's settings of a ``fit`` config section as the dataclass ``cls``.

    Args:
        cls: :class:`DistillConfig` or :class:`~graphnerf.fit.images.ImageFitConfig`.
        cfg: an instance of ``cls`` (returned as is); the ``fit`` config (a DictConfig or mapping
            with the sections, or one containing it under the key ``fit``, as
            ``load_config("fit/default")`` returns); None for the packaged defaults.
        section: ``"distill"`` or ``"images"``.
        family: the field family (``spec.family``); its block overrides the ``common`` block.
    """
    if isinstance(cfg, cls):
        return cfg
    if cfg is None:
        cfg = _default_fit_config()
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a {cls.__name__}, a fit config or None, got {type(cfg)}")
    if "fit" in cfg and section not in cfg:
        cfg = cfg["fit"]
    if section not in cfg:
        raise ValueError(f"fit config has no section {section!r}; keys: {sorted(cfg)}")
    block = cfg[section]
    merged = dict(block.get("common") or {})
    merged.update(block.get(family) or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(merged) - set(names))
    missing = [n for n in names if n not in merged]
    if unknown or missing:
        raise ValueError(
            f"fit.{section} for family {family!r}: unknown keys {unknown}, missing keys {missing}"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()})


# ----------------------------------------------------------------------------- scene helpers
def standard_step(aabb: Tensor | Sequence[float]) -> float:
    """The step over which alpha is measured: AABB diagonal / :data:`STEP_DIVISOR`."""
    box = torch.as_tensor(aabb, dtype=torch.float64).reshape(6)
    return float(torch.linalg.vector_norm(box[3:] - box[:3])) / STEP_DIVISOR


def alpha(sigma: Tensor, step: float) -> Tensor:
    """Opacity of a segment of length ``step`` at density ``sigma``: ``1 - exp(-sigma step)``."""
    return -torch.expm1(-sigma.clamp_min(0.0) * step)


def query_scene(scene: SceneFn, x: Tensor, chunk: int = QUERY_CHUNK) -> tuple[Tensor, Tensor]:
    """``scene(x)`` without gradients, in chunks: ``x [N, 3]`` -> ``sigma [N], rgb [N, 3]``."""
    sig, col = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            s, c = scene(x[start : start + chunk])
            n = min(chunk, x.shape[0] - start)
            sig.append(s.reshape(n).to(x))
            col.append(c.reshape(n, 3).to(x))
    return torch.cat(sig), torch.cat(col)


def scene_occupancy(scene: SceneFn, x: Tensor, step: float, chunk: int = QUERY_CHUNK) -> Tensor:
    """Occupancy of ``x [N, 3]``: ``scene.occupancy(x)`` if it exists, else alpha > 1/2."""
    occ_fn = getattr(scene, "occupancy", None)
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk):
            xc = x[start : start + chunk]
            if callable(occ_fn):
                out.append(torch.as_tensor(occ_fn(xc)).reshape(-1).to(torch.bool))
            else:
                out.append(alpha(scene(xc)[0].reshape(-1).to(x), step) > 0.5)
    return torch.cat(out).to(x.device)


def grid_centres(aabb: Tensor, res: int) -> Tensor:
    """Centres of a ``res^3`` grid of cells over ``aabb``: ``[res^3, 3]``, x slowest."""
    box = aabb.detach().to(torch.float32).cpu()
    ticks = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    axes = [box[d] + (box[d + 3] - box[d]) * ticks for d in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def _boundary_cells(occ: Tensor) -> Tensor:
    """Cells of a boolean grid ``[G, G, G]`` whose occupancy differs from a face neighbour."""
    edge = torch.zeros_like(occ)
    for dim in range(3):
        n = occ.shape[dim]
        d = occ.narrow(dim, 1, n - 1) != occ.narrow(dim, 0, n - 1)
        edge.narrow(dim, 1, n - 1).logical_or_(d)
        edge.narrow(dim, 0, n - 1).logical_or_(d)
    return edge


class SceneSamples:
    """Points of K scenes sampled once, with their targets, from which training batches are drawn.

    Per scene, ``cfg.cache_uniform`` points uniform in the AABB, then ``cfg.cache_surface`` points
    near the surface: centres of the cells of a ``cfg.surface_grid^3`` occupancy grid whose
    occupancy differs from a neighbour's, jittered by a Gaussian of std ``cfg.surface_jitter``
    (clamped to the box). A scene without any such cell (empty or full) gets uniform points there.

    Attributes:
        x: ``[K, P, 3]`` points; sigma ``[K, P]``, rgb ``[K, P, 3]`` the scenes' values there.
        n_uniform, n_surface: P = n_uniform + n_surface (uniform points first).
    """

    def __init__(
        self,
        scenes: Sequence[SceneFn],
        aabb: Tensor,
        cfg: DistillConfig,
        generator: torch.Generator,
    ) -> None:
        box = aabb.detach().to(torch.float32).cpu()
        lo, hi = box[:3], box[3:]
        step = standard_step(box)
        self.n_uniform = cfg.cache_uniform
        self.n_surface = cfg.cache_surface if cfg.surface_fraction > 0 else 0
        centres = grid_centres(box, cfg.surface_grid) if self.n_surface else None
        xs, sigmas, rgbs = [], [], []
        for scene in scenes:
            pts = [lo + (hi - lo) * torch.rand(self.n_uniform, 3, generator=generator)]
            if self.n_surface:
                g = cfg.surface_grid
                occ = scene_occupancy(scene, centres, step).reshape(g, g, g)
                cells = centres[_boundary_cells(occ).reshape(-1)]
                if cells.shape[0] == 0:  # nothing to find: spend the budget uniformly
                    near = lo + (hi - lo) * torch.rand(self.n_surface, 3, generator=generator)
                else:
                    pick = torch.randint(0, cells.shape[0], (self.n_surface,), generator=generator)
                    noise = torch.randn(self.n_surface, 3, generator=generator)
                    near = cells[pick] + cfg.surface_jitter * noise
                    near = torch.minimum(torch.maximum(near, lo), hi)
                pts.append(near)
            x = torch.cat(pts)
            sigma, rgb = query_scene(scene, x)
            xs.append(x)
            sigmas.append(sigma)
            rgbs.append(rgb.clamp(0.0, 1.0))
        self.x = torch.stack(xs)
        self.sigma = torch.stack(sigmas)
        self.rgb = torch.stack(rgbs)

    def to(self, device: torch.device | str) -> SceneSamples:
        self.x, self.sigma, self.rgb = (t.to(device) for t in (self.x, self.sigma, self.rgb))
        return self

    def batch(
        self, n: int, surface_fraction: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` points per scene (``round(n * surface_fraction)`` of them near the surface):
        ``x [K, n, 3]``, ``sigma [K, n]``, ``rgb [K, n, 3]``."""
        k = self.x.shape[0]
        n_surf = round(n * surface_fraction) if self.n_surface else 0
        idx = torch.randint(0, self.n_uniform, (k, n - n_surf), generator=generator)
        if n_surf:
            near = torch.randint(0, self.n_surface, (k, n_surf), generator=generator)
            idx = torch.cat([idx, near + self.n_uniform], 1)
        idx = idx.to(self.x.device)
        rows = torch.arange(k, device=self.x.device)[:, None]
        return self.x[rows, idx], self.sigma[rows, idx], self.rgb[rows, idx]


# ----------------------------------------------------------------------------- loss and optimiser
def distill_loss(
    sigma: Tensor,
    rgb: Tensor,
    target_sigma: Tensor,
    target_rgb: Tensor,
    cfg: DistillConfig,
    step: float,
) -> Tensor:
    """Distillation loss per field, averaged over the points (the last point dimension).

    Args:
        sigma, target_sigma: ``[..., B]`` densities; rgb, target_rgb: ``[..., B, 3]``.
        cfg: loss weights and the log-density clamp.
        step: segment length of alpha (:func:`standard_step`).
    Returns:
        ``[...]``: ``w_rgb * mean(w * |rgb - rgb_t|^2 / 3) + w_alpha * mean((alpha -
        alpha_t)^2) + w_log_sigma * mean((log(sigma + eps) - clog(sigma_t))^2)``, where
        ``clog(s) = clamp(log(s + eps), log eps, log sigma_max)`` and ``w = alpha_t``
        (``cfg.rgb_weight == "target"``) or ``max(alpha_t, alpha)`` (``"either"``; no gradient
        flows through the weight).
    """
    a_t = alpha(target_sigma, step)
    a = alpha(sigma, step)
    # the prediction is not clamped: a clamp would cut the gradient of floaters denser than
    # sigma_max, where alpha has saturated too (log(sigma + eps) >= log eps holds anyway)
    log_s = torch.log(sigma.clamp_min(0.0) + cfg.sigma_eps)
    log_t = torch.log(target_sigma.clamp_min(0.0) + cfg.sigma_eps)
    log_t = log_t.clamp(math.log(cfg.sigma_eps), math.log(cfg.sigma_max))
    w = a_t if cfg.rgb_weight == "target" else torch.maximum(a_t, a.detach())
    l_rgb = (w * (rgb - target_rgb).square().mean(-1)).mean(-1)
    l_alpha = (a - a_t).square().mean(-1)
    l_log = (log_s - log_t).square().mean(-1)
    return cfg.w_rgb * l_rgb + cfg.w_alpha * l_alpha + cfg.w_log_sigma * l_log


def make_optimizer(
    groups: tuple[list[nn.Parameter], list[nn.Parameter]], cfg: Any
) -> torch.optim.Adam:
    """Adam over (MLP weights, grids) (see :func:`split_params`) at ``cfg.lr`` / ``cfg.grid_lr``.

    Every group remembers its start value as ``initial_lr`` (see :func:`set_lr`).
    """
    param_groups = [
        {"params": list(ps), "lr": lr, "initial_lr": lr}
        for ps, lr in zip(groups, (cfg.lr, cfg.grid_lr), strict=True)
        if ps
    ]
    return torch.optim.Adam(param_groups, betas=tuple(cfg.betas), eps=cfg.adam_eps, foreach=True)


class BandLimit:
    """Which first-layer MLP columns a fit keeps at zero: those fed by high frequencies.

    A frequency encoding's highest frequencies (up to ``2^23 pi`` for the ``mlp`` spec, ``2^47
    pi`` for ``triplane``) vary faster than any sampling of the scene resolves: their weights
    only receive noise from the data, Adam's random walk keeps them as large as at
    initialisation, and the field scatters sub-voxel floaters through empty space that cost
    5-10 dB once integrated along rays. A fit therefore sets the first-layer columns of the
    frequencies ``2^k pi`` with ``k >= band_limit`` to zero and keeps them there; the field keeps
    its architecture (the features are still computed, and multiplied by zero). ``band_limit``
    None, or a field without a frequency encoding (hash grids), masks nothing.

    Attributes:
        masked: ``[in]`` bool, the zeroed columns; kept: ``[n_kept]`` indices of the others.
        n_frequencies: frequencies whose columns are kept, ``min(n_frequencies, band_limit)``.
    """

    def __init__(self, spec: Any, band_limit: int | None) -> None:
        n_freq = int(getattr(spec, "n_frequencies", 0))
        cols = torch.arange(spec.mlp_widths[0])
        freq_index = (cols % (2 * max(n_freq, 1))) // 2  # tcnn layout: d * 2F + 2k + s
        limit = n_freq if band_limit is None else min(int(band_limit), n_freq)
        self.masked = (cols < 6 * n_freq) & (freq_index >= limit)
        self.kept = torch.nonzero(~self.masked).squeeze(1)
        self.n_frequencies = limit
        self.active = bool(self.masked.any())

    def zero_(self, first_layer: Tensor) -> None:
        """Zero the masked columns of ``first_layer`` (``[..., out, in]``) in place."""
        if self.active:
            with torch.no_grad():
                first_layer[..., self.masked.to(first_layer.device)] = 0.0


def set_lr(opt: torch.optim.Optimizer, i: int, steps: int, lr_final: float) -> None:
    """Exponential decay from ``initial_lr`` (step 0) to ``lr_final * initial_lr`` (last step)."""
    factor = lr_final ** (i / max(1, steps - 1))
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] * factor


def split_params(field: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """A field's (MLP head weights, everything else: tri-planes, hash tables)."""
    mlp = getattr(field, "mlp", None)
    mlp_params = list(mlp.parameters()) if isinstance(mlp, nn.Module) else []
    ids = {id(p) for p in mlp_params}
    return mlp_params, [p for p in field.parameters() if id(p) not in ids]


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """The given CPU generator, or a new one seeded from torch's global RNG."""
    if generator is not None:
        return generator
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(seed)


def progress_bar(steps: int, enabled: bool, desc: str) -> Any:
    from ..progress import progress as tqdm  # a tqdm bar on a terminal, plain lines elsewhere

    return tqdm(total=steps, disable=not enabled, desc=desc, leave=False)


# ----------------------------------------------------------------------------- one field
def distill(
    field: RadianceField,
    scene: SceneFn,
    steps: int | None = None,
    cfg: DistillConfig | DictConfig | Mapping | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit ``field`` to ``scene`` by 3D distillation (in place), one field at a time.

    For many fields of the same spec, :func:`graphnerf.fit.distill_batch` is much faster.

    Args:
        field: any :class:`RadianceField` (trained through its own ``forward``).
        scene: ``x [N, 3] -> (sigma [N], rgb [N, 3])`` in world units; optional ``occupancy``.
        steps: number of Adam steps; default the config's.
        cfg: a :class:`DistillConfig`, a ``fit`` config (see :func:`fit_config`) or None for
            the packaged defaults of the field's family.
        generator: CPU generator for every random draw (default: seeded from torch's global RNG).
        progress: show a tqdm progress bar.
    """
    t0 = time.perf_counter()
    c = fit_config(DistillConfig, cfg, "distill", field.spec.family)
    steps = c.steps if steps is None else int(steps)
    gen = resolve_generator(generator)
    device = field.aabb.device
    samples = SceneSamples([scene], field.aabb, c, gen).to(device)
    step = standard_step(field.aabb)

    def loss_at(i: int) -> Tensor:
        x, t_sigma, t_rgb = samples.batch(c.batch_points, c.surface_fraction, gen)
        sigma, rgb = field(x[0])
        return distill_loss(sigma, rgb, t_sigma[0], t_rgb[0], c, step)

    return optimise(field, c, steps, loss_at, f"distill {field.spec.family}", progress, t0)


def optimise(
    field: RadianceField,
    c: Any,
    steps: int,
    loss_at: Callable[[int], Tensor],
    desc: str,
    progress: bool,
    t0: float,
) -> FitResult:
    """The fitting loop of one field: Adam (:func:`make_optimizer`) with the schedule of
    :func:`set_lr` on ``loss_at(i)`` for ``i < steps``, the band limit re-applied after every
    step; the field is in training mode meanwhile. ``c`` is a :class:`DistillConfig` or an
    ``ImageFitConfig`` (``lr``, ``grid_lr``, ``betas``, ``adam_eps``, ``lr_final``,
    ``band_limit``); ``t0`` is when the fit began (for the reported seconds)."""
    band = BandLimit(field.spec, c.band_limit)
    band.zero_(field.mlp.weights[0])
    opt = make_optimizer(split_params(field), c)
    history = torch.zeros(steps)
    was_training = field.training
    field.train()
    try:
        with progress_bar(steps, progress, desc) as bar:
            for i in range(steps):
                set_lr(opt, i, steps, c.lr_final)
                loss = loss_at(i)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                band.zero_(field.mlp.weights[0])
                history[i] = loss.detach()
                bar.update()
    finally:
        field.train(was_training)
    return FitResult(history.tolist(), time.perf_counter() - t0, steps)
