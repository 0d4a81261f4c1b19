"""Batched distillation: many fields of one spec fitted at once.

On a CPU a single small field spends most of a training step in per-operator overhead; stacking K
fields' parameters into one tensor per parameter makes every operator K times larger for about the
same overhead. :class:`StackedFields` computes exactly what each field computes, with

* the MLP head as a chain of ``bmm`` over ``[K, out, in]`` weight stacks,
* tri-planes as one ``grid_sample`` over the ``K x 3`` planes,
* hash grids as one gather from the concatenation of the K tables (each field's indices offset by
  ``k x n_entries``, passed to :func:`~graphnerf.fields.hash_grid_encoding` as per-point level
  offsets),

so the gradients of the summed per-field losses are each field's own, and one Adam over the stacks
is K independent Adams (Adam is elementwise). ``torch.func.vmap`` over the fields is not used: the
fields' custom autograd Functions (``trunc_exp``, the hash gather) have no vmap rule, and the hash
index computation reads a tensor's value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ..fields import (
    FIELD_CLASSES,
    RadianceField,
    frequency_encoding,
    hash_grid_encoding,
    trunc_exp,
)
from ..fields.encodings import TRIPLANE_AXES
from .distill import (
    BandLimit,
    DistillConfig,
    FitResult,
    SceneFn,
    SceneSamples,
    distill_loss,
    fit_config,
    make_optimizer,
    progress_bar,
    resolve_generator,
    set_lr,
    standard_step,
)

__all__ = ["StackedFields", "distill_batch", "distill_stacked"]

_GRID_ATTR = {"triplane": "triplane", "hash": "table"}


class StackedFields(nn.Module):
    """K fields of one spec as one module: ``forward(x [K, B, 3]) -> sigma [K, B], rgb [K, B, 3]``.

    Without ``band_limit``, slice k of the output equals ``fields[k](x[k])`` bit for bit, given
    the same parameters. With a ``band_limit`` (see :class:`~graphnerf.fit.distill.BandLimit`)
    the first layer only holds the kept columns: the masked ones are dropped (as if zero;
    :meth:`write_back` writes zeros there) and their frequencies are not even computed, which
    makes fitting cheaper; the fields then compute the same function up to float rounding (the
    matrix products sum in another order).

    Attributes:
        spec: the common :class:`~graphnerf.fields.FieldSpec`.
        band: the :class:`~graphnerf.fit.distill.BandLimit` in use.
        weights: ParameterList of ``[K, out, in]`` MLP weight stacks (``in`` = kept columns for
            the first one).
        grid: ``[K, 3, R, R, C]`` tri-planes or ``[K, E, F]`` hash tables; None for the MLP family.
    """

    def __init__(self, fields: Sequence[RadianceField], band_limit: int | None = None) -> None:
        super().__init__()
        if len(fields) == 0:
            raise ValueError("StackedFields needs at least one field")
        spec = fields[0].spec
        cls = FIELD_CLASSES.get(spec.family)
        for k, f in enumerate(fields):
            if type(f) is not cls:
                raise TypeError(
                    f"StackedFields: field {k} is a {type(f).__name__}; batched fitting supports "
                    f"exactly {', '.join(c.__name__ for c in FIELD_CLASSES.values())} "
                    "(use graphnerf.fit.distill for other fields)"
                )
            if f.spec != spec:
                raise ValueError(
                    f"StackedFields: all fields must share one spec; field {k} has "
                    f"{f.spec.to_json()}, field 0 has {spec.to_json()}"
                )
        self.spec = spec
        self.n_fields = len(fields)
        self.band = BandLimit(spec, band_limit)
        ref = fields[0]
        with torch.no_grad():
            stacks = [
                torch.stack([f.mlp.weights[i].detach() for f in fields]).clone()
                for i in range(len(ref.mlp.weights))
            ]
            if self.band.active:
                stacks[0] = stacks[0][..., self.band.kept.to(stacks[0].device)]
            self.weights = nn.ParameterList([nn.Parameter(w) for w in stacks])
            attr = _GRID_ATTR.get(spec.family)
            self.grid = (
                None
                if attr is None
                else nn.Parameter(torch.stack([getattr(f, attr).detach() for f in fields]).clone())
            )
        for name, buf in ref.named_buffers(recurse=False):
            self.register_buffer(name, buf.clone(), persistent=False)
        self.activation = ref.mlp.activation

    # ------------------------------------------------------------------ parameters
    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(MLP weight stacks, grid stack), as :func:`~graphnerf.fit.distill.split_params`."""
        return list(self.weights), [] if self.grid is None else [self.grid]

    def write_back(self, fields: Sequence[RadianceField]) -> None:
        """Copy slice k of every stack into ``fields[k]``'s parameters (exact copies; with a
        band limit the masked first-layer columns are set to zero)."""
        if len(fields) != self.n_fields:
            raise ValueError(f"write_back: expected {self.n_fields} fields, got {len(fields)}")
        attr = _GRID_ATTR.get(self.spec.family)
        with torch.no_grad():
            for k, f in enumerate(fields):
                if f.spec != self.spec:
                    raise ValueError(f"write_back: field {k} does not have the stacked spec")
                for i, (w, stack) in enumerate(zip(f.mlp.weights, self.weights, strict=True)):
                    if i == 0 and self.band.active:
                        w.zero_()
                        w[:, self.band.kept.to(w.device)] = stack[k]
                    else:
                        w.copy_(stack[k])
                if attr is not None:
                    getattr(f, attr).copy_(self.grid[k])

    # ------------------------------------------------------------------ forward
    def _features(self, x01: Tensor) -> Tensor:
        """``x01 [K, B, 3]`` in [0, 1] -> unpadded MLP inputs ``[K, B, spec.mlp_input_dim]``."""
        k, b, _ = x01.shape
        flat = x01.reshape(k * b, 3)
        family = self.spec.family
        n_freq = self.band.n_frequencies
        if family == "mlp":
            return frequency_encoding(flat, n_freq).reshape(k, b, -1)
        if family == "hash":
            e = self.grid.shape[1]
            offsets = self.offsets + e * torch.arange(k, device=x01.device)[:, None]  # [K, L]
            offsets = offsets[:, None, None, :].expand(k, b, 1, -1).reshape(k * b, 1, -1)
            feats = hash_grid_encoding(
                flat,
                self.grid.reshape(k * e, -1),
                self.scales,
                self.resolutions,
                self.table_sizes,
                offsets,
                self.dense,
            )
            return feats.reshape(k, b, -1)
        # tri-plane: the same lookup as triplane_features, over K x 3 planes at once
        xm11 = 2.0 * x01 - 1.0
        uv = torch.stack([xm11[..., list(a)] for a in TRIPLANE_AXES], 1)  # [K, 3, B, 2]
        r, c = self.spec.resolution, self.spec.channels
        planes = self.grid.permute(0, 1, 4, 2, 3).reshape(k * 3, c, r, r)
        sampled = torch.nn.functional.grid_sample(
            planes,
            uv.reshape(k * 3, 1, b, 2).to(planes.dtype),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )  # [K * 3, C, 1, B]
        feats = sampled.reshape(k, 3, c, b).sum(1).transpose(1, 2)  # [K, B, C]
        if n_freq == 0:
            return feats
        freq = frequency_encoding(flat, n_freq).reshape(k, b, -1)
        return torch.cat([freq, feats], 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[0] != self.n_fields or x.shape[2] != 3:
            raise ValueError(
                f"StackedFields input must be [K={self.n_fields}, B, 3], got {tuple(x.shape)}"
            )
        lo, hi = self.aabb[:3], self.aabb[3:]
        x01 = (x - lo) / (hi - lo)
        inside = ((x01 > 0.0) & (x01 < 1.0)).all(-1)
        h = self._features(x01)
        pad = self.weights[0].shape[2] - h.shape[2]
        if pad:
            h = torch.cat([h, h.new_full((*h.shape[:2], pad), self.spec.pad_value)], 2)
        for w in self.weights[:-1]:
            h = torch.bmm(h, w.transpose(1, 2))
            h = torch.relu(h) if self.activation == "relu" else torch.sin(h)
        raw = torch.bmm(h, self.weights[-1].transpose(1, 2))
        sigma = trunc_exp(raw[..., 3] - 1.0) * inside
        return sigma, torch.sigmoid(raw[..., :3])


def distill_stacked(
    stack: StackedFields,
    scenes: Sequence[SceneFn],
    cfg: DistillConfig | DictConfig | Mapping | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[FitResult]:
    """Distil ``scenes[k]`` into slice k of ``stack`` (in place); see :func:`distill_batch`.

    The stack's own band limit is used (``cfg.band_limit`` is what :func:`distill_batch` builds
    the stack with).
    """
    t0 = time.perf_counter()
    if len(scenes) != stack.n_fields:
        raise ValueError(f"got {len(scenes)} scenes for {stack.n_fields} fields")
    c = fit_config(DistillConfig, cfg, "distill", stack.spec.family)
    steps = c.steps if steps is None else int(steps)
    gen = resolve_generator(generator)
    samples = SceneSamples(scenes, stack.aabb, c, gen).to(stack.aabb.device)
    step = standard_step(stack.aabb)
    opt = make_optimizer(stack.param_groups(), c)
    history = torch.zeros(steps, stack.n_fields)
    with progress_bar(steps, progress, f"distill {stack.n_fields} x {stack.spec.family}") as bar:
        for i in range(steps):
            set_lr(opt, i, steps, c.lr_final)
            x, t_sigma, t_rgb = samples.batch(c.batch_points, c.surface_fraction, gen)
            sigma, rgb = stack(x)
            losses = distill_loss(sigma, rgb, t_sigma, t_rgb, c, step)  # [K]
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            history[i] = losses.detach()
            bar.update()
    seconds = (time.perf_counter() - t0) / stack.n_fields
    return [
        FitResult(history[:, k].tolist(), seconds, steps, stack.n_fields)
        for k in range(stack.n_fields)
    ]


def distill_batch(
    fields: Sequence[RadianceField],
    scenes: Sequence[SceneFn],
    cfg: DistillConfig | DictConfig | Mapping | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> list[FitResult]:
    """Fit ``fields[k]`` to ``scenes[k]`` for every k at once, by 3D distillation.

    The fields must share one spec (and be plain ``MLPField`` / ``TriplaneField`` /
    ``HashGridField``). Each field gets its own points and targets; the result is, up to the
    random draws, what :func:`~graphnerf.fit.distill` gives each field on its own, several times
    faster. At the end each field's parameters are overwritten with its slice of the stacks, so
    ``fields[k](x)`` equals what the stacked model computes. ``FitResult.seconds`` is the call's
    wall time divided by the number of fields. Memory grows with ``len(fields)`` (the scene
    samples take ``28 (cache_uniform + cache_surface)`` bytes per field): split very long lists.

    Args:
        fields, scenes: equally long lists.
        cfg, steps, generator, progress: as for :func:`~graphnerf.fit.distill`.
    """
    if len(fields) != len(scenes):
        raise ValueError(f"got {len(fields)} fields and {len(scenes)} scenes")
    c = fit_config(DistillConfig, cfg, "distill", fields[0].spec.family) if fields else None
    stack = StackedFields(fields, band_limit=c.band_limit if c else None)
    results = distill_stacked(stack, scenes, c, steps, generator, progress)
    stack.write_back(fields)
    return results
