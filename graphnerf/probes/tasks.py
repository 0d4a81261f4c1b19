"""Synthetic probe tasks: real `RadianceField`s whose parameters hide a known geometric target.

Each task draws ``n_train + n_val`` fields of one small spec from one distribution and gives the
regression target of each, ``y [n, k]``. An encoder that reads *where* values sit in space can
predict the target from the parameter graph (``graphnerf.to_graph``) or from SANE tokens; one
that only sees the bag of values cannot (the values' histogram barely depends on the centre).

Tasks (:data:`TASKS`; coordinates are AABB-normalised, ``[0, 1]^3``):

* ``dense_hash`` — one dense hash level (resolution 12, table 2^11, 2 features): every vertex
  entry holds ``a_f exp(-|p - c|^2 / (2 sigma^2))`` at the vertex position ``p`` where the field
  reads it (``graphnerf.graph.hashgrid.dense_positions``), ``a_f`` in [0.5, 1.5] per field and
  feature, sigma in [0.2, 0.25], plus N(0, 0.05) noise on every entry (padding entries: noise
  only). Target: the centre ``c`` [n, 3], uniform in [0.25, 0.75]^3.
* ``hashed_hash`` — one hashed level (resolution 16, table 2^11: 16^3 vertices share 2^11 entries,
  2 per entry on average, as on the coarser hashed levels of an Instant-NGP grid). Every entry holds the mean of the blob over the vertices that hash to it (the
  least-squares table when every vertex is read with weight 1), plus noise. Target: the centre.
* ``triplane`` — a tri-plane (resolution 16, 4 channels, 1 input frequency): plane ``k`` over
  world axes ``(a, b)`` holds ``a_ch exp(-((u - c_a)^2 + (v - c_b)^2) / (2 sigma^2))`` at the
  cell's position (``u / (R - 1)``, as the field reads it), plus noise. Target: the centre.
* ``mlp_sphere`` — an MLP field (2 frequencies, 2 hidden layers of 32, ReLU) *fitted* by 300 Adam
  steps (all fields at once, stacked ``bmm``) so that its raw density output is ``6 (1 -
  |x - c| / r)`` clamped to [-3, 6] (a ball of radius ``r`` in [0.15, 0.3] at centre ``c`` in
  [0.3, 0.7]^3). Half of each step's 512 points are drawn uniformly in the unit cube, half
  uniformly in the ball of radius ``1.3 r`` around ``c``: with uniform points only, a small ball
  holds ~7 of 512 points and 10 of 96 fits missed it (IoU of ``raw > 0`` with the ball on a
  16^3 grid below 0.7, some 0, so the target was not a property of the field); with the
  biased draw the IoU is 0.92-0.99 (mean 0.97) at the same cost. Target: ``[c, r]`` [n, 4].

The blob's width and amplitude and the noise vary per field, so the value histogram alone does
not give the centre. Everything is deterministic per ``seed`` (one ``torch.Generator``), and the
parameters are computed for all fields at once; only the field objects are built one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..fields import (
    HashGridSpec,
    MLPSpec,
    RadianceField,
    TriplaneSpec,
    build_field,
    frequency_encoding,
    hash_grid_indices,
)
from ..fields.encodings import TRIPLANE_AXES

__all__ = ["TASKS", "ProbeTask", "make_task", "task_spec"]

TASKS: tuple[str, ...] = ("dense_hash", "hashed_hash", "triplane", "mlp_sphere")
NOISE = 0.05
SIGMA_RANGE = (0.2, 0.25)
CENTRE_RANGE = (0.25, 0.75)

# small MLP heads: the probe is about the grids; the head weights stay random (noise edges)
_HEAD = {"n_hidden_layers": 1, "n_neurons": 16}
_SPECS = {
    "dense_hash": HashGridSpec(
        n_levels=1,
        n_features_per_level=2,
        log2_table_size=11,
        base_resolution=12,
        max_resolution=12,
        **_HEAD,
    ),
    "hashed_hash": HashGridSpec(
        n_levels=1,
        n_features_per_level=2,
        log2_table_size=11,
        base_resolution=16,
        max_resolution=16,
        **_HEAD,
    ),
    "triplane": TriplaneSpec(resolution=16, channels=4, n_frequencies=1, **_HEAD),
    "mlp_sphere": MLPSpec(n_frequencies=2, n_hidden_layers=2, n_neurons=32),
}
_TASK_SALT = {name: i for i, name in enumerate(TASKS)}
MLP_FIT_STEPS = 300
MLP_FIT_POINTS = 512
#: fraction of the fitting points drawn in the ball (radius 1.3 r) rather than the unit cube
MLP_FIT_INSIDE = 0.5


@dataclass
class ProbeTask:
    """One probe: training and held-out fields with their targets.

    Attributes:
        name: task name (one of :data:`TASKS`).
        fields_train: ``n_train`` fields; ``y_train`` ``[n_train, k]`` float32 targets.
        fields_val: ``n_val`` held-out fields; ``y_val`` ``[n_val, k]``.
        target_names: the ``k`` target column names.
    """

    name: str
    fields_train: list[RadianceField]
    y_train: Tensor
    fields_val: list[RadianceField]
    y_val: Tensor
    target_names: tuple[str, ...]


def task_spec(name: str):  # -> FieldSpec
    """The field spec of a task."""
    _check_name(name)
    return _SPECS[name]


def _check_name(name: str) -> None:
    if name not in _SPECS:
        raise ValueError(f"unknown probe task {name!r}; expected one of {TASKS}")


def _uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _blob(pos: Tensor, centre: Tensor, sigma: Tensor) -> Tensor:
    """``exp(-|pos - c|^2 / (2 sigma^2))``: pos ``[P, d]``, centre ``[n, d]``, sigma ``[n]`` ->
    ``[n, P]``."""
    d2 = (pos[None, :, :] - centre[:, None, :]).square().sum(-1)
    return torch.exp(-d2 / (2.0 * sigma[:, None] ** 2))


def _fields(spec, n: int, seed: int) -> list[RadianceField]:
    return [build_field(spec, seed=seed * 100_003 + i) for i in range(n)]


def _hash_tables(spec: HashGridSpec, gen: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Tables ``[n, entries, F]`` holding a blob per field and the centres ``[n, 3]``."""
    res, scale = int(spec.level_resolutions[0]), float(spec.level_scales[0])
    size, n_feat = int(spec.level_table_sizes[0]), spec.n_features_per_level
    centre = _uniform(gen, (n, 3), *CENTRE_RANGE)
    sigma = _uniform(gen, (n,), *SIGMA_RANGE)
    amp = _uniform(gen, (n, 1, n_feat), 0.5, 1.5)
    i = torch.arange(res)
    z, y, x = torch.meshgrid(i, i, i, indexing="ij")
    vert = torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)  # [res^3, 3]
    pos = (vert.double() - 0.5) / scale  # where the field reads the vertex with weight 1
    blob = _blob(pos.float(), centre, sigma)  # [n, res^3]
    idx = hash_grid_indices(
        vert[:, None, :],
        torch.from_numpy(spec.level_resolutions),
        torch.from_numpy(spec.level_table_sizes),
        torch.from_numpy(spec.level_is_dense),
    )[:, 0]  # [res^3]
    # mean of the blob over the vertices sharing an entry (dense: the identity)
    total = torch.zeros(n, size).index_add_(1, idx, blob)
    count = torch.bincount(idx, minlength=size).clamp_min(1).float()
    table = (total / count)[:, :, None] * amp
    table = table + NOISE * torch.randn(table.shape, generator=gen)
    return table, centre


def _triplanes(spec: TriplaneSpec, gen: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    """Planes ``[n, 3, R, R, C]`` holding the blob's projection on each plane, centres ``[n, 3]``."""
    r, c = spec.resolution, spec.channels
    centre = _uniform(gen, (n, 3), *CENTRE_RANGE)
    sigma = _uniform(gen, (n,), *SIGMA_RANGE)
    amp = _uniform(gen, (n, 1, 1, 1, c), 0.5, 1.5)
    t = torch.arange(r, dtype=torch.float32) / (r - 1)
    vv, uu = torch.meshgrid(t, t, indexing="ij")
    uv = torch.stack([uu.reshape(-1), vv.reshape(-1)], 1)  # [R*R, 2], row v, column u
    planes = torch.stack(
        [_blob(uv, centre[:, list(ax)], sigma).view(n, r, r) for ax in TRIPLANE_AXES], 1
    )  # [n, 3, R, R]
    planes = planes[..., None] * amp
    planes = planes + NOISE * torch.randn(planes.shape, generator=gen)
    return planes, centre


def _fit_mlps(spec: MLPSpec, fields: list[RadianceField], gen: torch.Generator) -> Tensor:
    """Fit every field's head (stacked) to a ball; returns ``[c, r]`` targets ``[n, 4]``."""
    n = len(fields)
    centre = _uniform(gen, (n, 3), 0.3, 0.7)
    radius = _uniform(gen, (n,), 0.15, 0.3)
    ws = [
        torch.stack([f.mlp.weights[i].detach() for f in fields]).requires_grad_(True)
        for i in range(len(spec.mlp_widths) - 1)
    ]
    opt = torch.optim.Adam(ws, lr=1e-2)
    pad = spec.mlp_widths[0] - spec.mlp_input_dim
    n_in = int(MLP_FIT_POINTS * MLP_FIT_INSIDE)
    for _ in range(MLP_FIT_STEPS):
        x = torch.rand((n, MLP_FIT_POINTS, 3), generator=gen)
        if n_in:  # half the points inside the ball (module docstring)
            d = torch.randn((n, n_in, 3), generator=gen)
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            d = d * torch.rand((n, n_in, 1), generator=gen) ** (1.0 / 3.0)
            near = centre[:, None, :] + 1.3 * radius[:, None, None] * d
            x[:, :n_in] = near.clamp(0.0, 1.0)
        feats = frequency_encoding(x.reshape(-1, 3), spec.n_frequencies).view(n, MLP_FIT_POINTS, -1)
        h = torch.cat([feats, feats.new_full((n, MLP_FIT_POINTS, pad), spec.pad_value)], -1)
        for w in ws[:-1]:
            h = torch.relu(torch.bmm(h, w.transpose(1, 2)))
        raw = torch.bmm(h, ws[-1].transpose(1, 2))[..., 3]  # [n, P] density channel
        dist = (x - centre[:, None, :]).norm(dim=-1)
        target = (6.0 * (1.0 - dist / radius[:, None])).clamp(-3.0, 6.0)
        loss = (raw - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        for k, f in enumerate(fields):
            for w, stack in zip(f.mlp.weights, ws, strict=True):
                w.copy_(stack[k])
    return torch.cat([centre, radius[:, None]], 1)


def make_task(name: str, n_train: int = 64, n_val: int = 32, seed: int = 0) -> ProbeTask:
    """Build a probe task (module docstring): ``n_train`` + ``n_val`` fields and their targets.

    Args:
        name: one of :data:`TASKS`.
        n_train, n_val: numbers of training and held-out fields (>= 1 each).
        seed: everything (fields' initialisation, targets, noise, fitting) follows from it.
    """
    _check_name(name)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"make_task: n_train and n_val must be >= 1, got {n_train}, {n_val}")
    n = n_train + n_val
    spec = _SPECS[name]
    gen = torch.Generator().manual_seed(int(seed) * 7919 + _TASK_SALT[name])
    fields = _fields(spec, n, seed * len(TASKS) + _TASK_SALT[name])
    names: tuple[str, ...] = ("cx", "cy", "cz")
    with torch.no_grad():
        if name in ("dense_hash", "hashed_hash"):
            table, y = _hash_tables(spec, gen, n)
            for f, t in zip(fields, table, strict=True):
                f.table.copy_(t)
        elif name == "triplane":
            planes, y = _triplanes(spec, gen, n)
            for f, p in zip(fields, planes, strict=True):
                f.triplane.copy_(p)
    if name == "mlp_sphere":
        y = _fit_mlps(spec, fields, gen)
        names = ("cx", "cy", "cz", "radius")
    y = y.float()
    assert math.isfinite(float(y.sum()))
    return ProbeTask(name, fields[:n_train], y[:n_train], fields[n_train:], y[n_train:], names)
