"""Thirteen procedural shape classes mirroring ShapeNet's 13 categories.

``make_scene(class_name, seed)`` builds one object out of a handful of SDF parts (see
:mod:`graphnerf.scenes.sdf`) with randomised proportions, part counts and colours. Everything is
drawn from ``numpy.random.default_rng([class index, seed])``, so an object is a pure function of
``(class_name, seed)``.

Canonical pose: z is up, the object's front faces +y (furniture, screens, speakers, phones) or its
length runs along x (vehicles, rifle, bench, sofa).

Normalisation (shared by every class, so size alone does not reveal the class): the largest side
of the object's bounding box is drawn uniformly from :data:`SIZE_RANGE` (world units) per
instance; the box is centred at the AABB centre; if the object's bounding sphere would then be
larger than :data:`MAX_RADIUS` (inside the AABB half-size 0.7 with a margin), it is scaled down
to it, so any rotation of the object stays inside the AABB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .base import DEFAULT_AABB, DEFAULT_DENSITY, Scene
from .sdf import (
    SDF,
    Box,
    Capsule,
    Cone,
    Cylinder,
    Ellipsoid,
    HalfSpace,
    Intersection,
    PartUnion,
    RoundedBox,
    Sphere,
    Torus,
    rot_x,
    rot_y,
    rot_z,
)

__all__ = ["CLASSES", "MAX_RADIUS", "SIZE_RANGE", "ProceduralScene", "make_scene"]

CLASSES: tuple[str, ...] = (
    "airplane",
    "bench",
    "cabinet",
    "car",
    "chair",
    "display",
    "lamp",
    "loudspeaker",
    "rifle",
    "sofa",
    "table",
    "telephone",
    "watercraft",
)

SIZE_RANGE: tuple[float, float] = (0.7, 1.0)  # largest bounding-box side, world units
MAX_RADIUS = 0.66  # bounding-sphere cap: inside the AABB half-size 0.7


class ProceduralScene(Scene):
    """A scene made of coloured SDF parts, normalised into the AABB.

    Args:
        parts: the object in its own (raw) units.
        class_name, seed: identity; ``name`` defaults to ``f"{class_name}_{seed:04d}"``.
        size: target largest bounding-box side in world units (capped by :data:`MAX_RADIUS`).
    """

    def __init__(
        self,
        parts: PartUnion,
        class_name: str,
        seed: int | None = None,
        size: float = 0.75,
        name: str | None = None,
        aabb: Sequence[float] = DEFAULT_AABB,
        density: float = DEFAULT_DENSITY,
        edge: float = 0.0,
    ) -> None:
        if name is None:
            name = f"{class_name}_{seed:04d}" if seed is not None else class_name
        super().__init__(name, class_name, seed, aabb, density, edge)
        lo, hi = parts.bounds
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(f"{name}: parts must be bounded")
        self.parts = parts
        self.offset = (lo + hi) / 2  # raw-unit centre of the bounding box
        scale = float(size) / float((hi - lo).max())
        radius = parts.bounding_radius(self.offset) * scale
        if radius > MAX_RADIUS:
            scale *= MAX_RADIUS / radius
        self.scale = scale
        self.bounding_radius = parts.bounding_radius(self.offset) * scale

    def _to_raw(self, x: Tensor) -> Tensor:
        return (x - self.center.to(x)) / self.scale + x.new_tensor(self.offset)

    def sdf(self, x: Tensor) -> Tensor:
        """World-unit signed distance (negative inside), ignoring the AABB."""
        x = torch.as_tensor(x)
        shape = x.shape[:-1]
        return (self.parts(self._to_raw(x.reshape(-1, 3))) * self.scale).reshape(shape)

    def _occupied(self, x: Tensor) -> Tensor:
        return self.parts(self._to_raw(x)) < 0

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d, part = self.parts.evaluate(self._to_raw(x))
        d = d * self.scale
        return d < 0, self.parts.color(part, x.dtype), d

    def __repr__(self) -> str:
        return f"ProceduralScene(name={self.name!r}, parts={len(self.parts)})"


# ---------------------------------------------------------------------------------------------
# palettes and the part collector


def _rgb(hexcode: str) -> tuple[float, float, float]:
    h = hexcode.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


WOOD = ["#8b5a2b", "#a0703c", "#c19a6b", "#5c3a1e", "#d2b48c"]
METAL = ["#9ea3a8", "#4a4e52", "#c0c0c0", "#2f3236"]
DARK = ["#1c1c1f", "#26282c", "#101418"]
FABRIC = ["#7a1f2b", "#1f4e79", "#3b6b3b", "#b0a48a", "#5a5a66", "#c46a2e", "#6b4c7a"]
BRIGHT = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#f0e442", "#e6e6e6", "#9467bd"]
WHITE = ["#f2f2f2", "#dcdcdc", "#e8e2d0"]
GLASS = ["#2b3e50", "#3a5a78", "#1e2a36"]

PALETTES: dict[str, dict[str, list[str]]] = {
    "airplane": {
        "body": WHITE + ["#b8c2cc", "#6b7b5a"],
        "wing": WHITE + ["#a8b0b8"],
        "tail": BRIGHT,
        "engine": METAL,
    },
    "bench": {"seat": WOOD + ["#7a7a7a"], "frame": METAL + DARK, "back": WOOD},
    "cabinet": {
        "body": WOOD + WHITE,
        "front": WOOD + WHITE + ["#8fa3b0"],
        "handle": METAL,
        "base": DARK + WOOD,
    },
    "car": {
        "body": BRIGHT + ["#1a1a1a", "#c0c0c0"],
        "glass": GLASS,
        "tire": DARK,
        "rim": METAL,
        "light": ["#fff5c0", "#ffd27f"],
    },
    "chair": {
        "seat": FABRIC + WOOD,
        "back": FABRIC + WOOD,
        "legs": WOOD + METAL + DARK,
        "arms": WOOD + DARK,
    },
    "display": {"frame": DARK + WHITE + METAL, "screen": GLASS + DARK, "stand": DARK + METAL},
    "lamp": {
        "base": METAL + DARK + WOOD,
        "pole": METAL + DARK,
        "shade": WHITE + BRIGHT + ["#f5deb3"],
    },
    "loudspeaker": {
        "box": WOOD + DARK + WHITE,
        "driver": DARK,
        "ring": METAL,
        "feet": DARK,
    },
    "rifle": {"metal": DARK + ["#3d3f42"], "stock": WOOD + DARK + ["#6b6b4a"], "scope": DARK},
    "sofa": {"base": FABRIC, "cushion": FABRIC + WHITE, "legs": WOOD + DARK},
    "table": {"top": WOOD + WHITE + ["#7f7f7f"], "legs": WOOD + METAL + DARK, "shelf": WOOD},
    "telephone": {
        "body": DARK + WHITE + BRIGHT + METAL,
        "screen": GLASS,
        "button": METAL + WHITE,
        "lens": DARK,
    },
    "watercraft": {
        "hull": WHITE + ["#1f3a5f", "#8b1a1a", "#2f4f2f"],
        "deck": WOOD + WHITE,
        "cabin": WHITE + GLASS,
        "sail": WHITE + ["#f5f0dc"],
        "funnel": BRIGHT + DARK,
        "mast": WOOD + METAL,
    },
}


class _Parts:
    """Collects parts with per-role colours (a base colour from the palette, then jittered)."""

    def __init__(self, rng: np.random.Generator, palette: dict[str, list[str]]) -> None:
        self.rng = rng
        self.palette = palette
        self.role_colors: dict[str, np.ndarray] = {}
        self.shapes: list[SDF] = []
        self.colors: list[np.ndarray] = []

    def color(self, role: str) -> np.ndarray:
        if role not in self.role_colors:
            options = self.palette[role]
            base = np.array(_rgb(options[int(self.rng.integers(len(options)))]))
            jitter = self.rng.normal(0.0, 0.04, 3) + self.rng.uniform(-0.08, 0.08)
            self.role_colors[role] = np.clip(base + jitter, 0.02, 0.98)
        return self.role_colors[role]

    def add(self, shape: SDF, role: str) -> None:
        self.shapes.append(shape)
        self.colors.append(self.color(role))

    def union(self) -> PartUnion:
        return PartUnion(self.shapes, np.stack(self.colors))


def _box(lo: Sequence[float], hi: Sequence[float], **kw) -> Box:
    """Axis-aligned box between two corners."""
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    return Box((hi_a - lo_a) / 2, center=(lo_a + hi_a) / 2, **kw)


def _rbox(lo: Sequence[float], hi: Sequence[float], radius: float) -> RoundedBox:
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    return RoundedBox((hi_a - lo_a) / 2, radius, center=(lo_a + hi_a) / 2)


def _vcyl(x: float, y: float, z0: float, z1: float, r: float) -> Cylinder:
    """Vertical cylinder from z0 to z1."""
    return Cylinder(r, (z1 - z0) / 2, center=(x, y, (z0 + z1) / 2))


# ---------------------------------------------------------------------------------------------
# the classes. Each builder adds parts in raw units (roughly metres scaled to ~1).


def _airplane(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    L = u(1.0, 1.4)
    rf = L * u(0.06, 0.09)
    p.add(Capsule(rf, L / 2 - rf, axis="x"), "body")
    span = L * u(0.75, 1.25)
    chord = L * u(0.12, 0.22)
    thick = rf * u(0.45, 0.7)
    x0 = L * u(-0.05, 0.12)  # wing root leading edge
    zw = rf * u(-0.6, 0.6)  # low / mid / high wing
    delta = rng.random() < 0.25
    if delta:  # triangular wings: a box cut by the leading edge plane
        chord = L * u(0.35, 0.5)
        for sgn in (1.0, -1.0):
            slab = _box(
                (x0 - chord, min(0.0, sgn * span / 2), zw - thick / 2),
                (x0, max(0.0, sgn * span / 2), zw + thick / 2),
            )
            cut = HalfSpace((span / 2, sgn * chord, 0.0), point=(x0, 0.0, zw))
            p.add(Intersection(slab, cut), "wing")
    else:
        sweep = u(0.0, 35.0)
        for sgn in (1.0, -1.0):
            R = rot_z(sgn * sweep)
            c = np.array([x0 - chord / 2, 0.0, zw]) + R @ np.array([0.0, sgn * span / 4, 0.0])
            p.add(Box((chord / 2, span / 4, thick / 2), center=c, rotation=R), "wing")
        n_eng = int(rng.choice([0, 2, 2, 4]))
        er = rf * u(0.45, 0.7)
        for k in range(n_eng):
            sgn = 1.0 if k % 2 == 0 else -1.0
            frac = 0.3 if k < 2 else 0.6
            yy = sgn * frac * span / 2
            xx = x0 - chord / 2 - abs(yy) * math.tan(math.radians(sweep)) + chord * 0.4
            p.add(Cylinder(er, chord * 0.6, center=(xx, yy, zw - er * 1.1), axis="x"), "engine")
    # tail: horizontal stabiliser and a fin, swept back
    xt = -L / 2 + L * 0.08
    hs = span * u(0.25, 0.4)
    hc = chord * u(0.45, 0.7)
    zt = rf * u(0.0, 0.8)
    p.add(Box((hc / 2, hs / 2, thick / 2.5), center=(xt, 0.0, zt)), "tail")
    fin_h = L * u(0.12, 0.22)
    fin_sweep = u(15.0, 40.0)
    p.add(
        Box(
            (hc / 2, thick / 2, fin_h / 2),
            center=(xt - math.tan(math.radians(fin_sweep)) * fin_h / 2, 0.0, rf * 0.5 + fin_h / 2),
            rotation=rot_y(-fin_sweep),
        ),
        "tail",
    )
    if rng.random() < 0.4:  # a cockpit canopy
        p.add(Ellipsoid((L * 0.09, rf * 0.6, rf * 0.55), center=(L * 0.33, 0.0, rf * 0.7)), "tail")


def _bench(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    L, D, H = u(1.0, 1.7), u(0.32, 0.5), u(0.38, 0.5)
    t = u(0.04, 0.08)
    if rng.random() < 0.5:  # slatted seat
        n = int(rng.integers(3, 6))
        gap = D * 0.06
        w = (D - gap * (n - 1)) / n
        for i in range(n):
            y0 = -D / 2 + i * (w + gap)
            p.add(_box((-L / 2, y0, H - t), (L / 2, y0 + w, H)), "seat")
        p.add(_box((-L / 2 + 0.05, -D / 2, H - 2 * t), (L / 2 - 0.05, D / 2, H - t)), "frame")
    else:
        p.add(_box((-L / 2, -D / 2, H - t), (L / 2, D / 2, H)), "seat")
    leg_style = rng.choice(["panel", "legs", "legs6"])
    lw = u(0.04, 0.07)
    if leg_style == "panel":
        for sx in (-1.0, 1.0):
            x = sx * (L / 2 - u(0.05, 0.15))
            p.add(
                _box((x - lw / 2, -D / 2 + 0.02, 0.0), (x + lw / 2, D / 2 - 0.02, H - t)), "frame"
            )
    else:
        xs = [-1.0, 1.0] if leg_style == "legs" else [-1.0, 0.0, 1.0]
        for sx in xs:
            for sy in (-1.0, 1.0):
                x, y = sx * (L / 2 - lw), sy * (D / 2 - lw)
                p.add(_box((x - lw / 2, y - lw / 2, 0.0), (x + lw / 2, y + lw / 2, H - t)), "frame")
    if rng.random() < 0.55:  # backrest on posts, optional armrests
        bh = u(0.25, 0.45)
        tilt = u(0.0, 15.0)
        yb = -D / 2 + 0.03
        p.add(
            Box(
                (L / 2, 0.025, bh / 2),
                center=(0.0, yb - 0.02, H + 0.08 + bh / 2),
                rotation=rot_x(tilt),
            ),
            "back",
        )
        for sx in (-1.0, 1.0):
            x = sx * (L / 2 - 0.06)
            p.add(_box((x - 0.025, yb - 0.04, H - t), (x + 0.025, yb, H + 0.1)), "frame")
        if rng.random() < 0.5:
            for sx in (-1.0, 1.0):
                x = sx * (L / 2 - 0.03)
                p.add(_box((x - 0.03, -D / 2, H + 0.2), (x + 0.03, D / 2, H + 0.25)), "frame")
                p.add(_box((x - 0.02, D / 2 - 0.06, H), (x + 0.02, D / 2 - 0.02, H + 0.2)), "frame")


def _cabinet(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    W, D, H = u(0.5, 1.1), u(0.35, 0.6), u(0.55, 1.5)
    base_h = u(0.04, 0.12)
    p.add(_rbox((-W / 2, -D / 2, base_h), (W / 2, D / 2, H), 0.01), "body")
    if rng.random() < 0.5:  # plinth
        p.add(
            _box((-W / 2 + 0.03, -D / 2 + 0.03, 0.0), (W / 2 - 0.03, D / 2 - 0.03, base_h)), "base"
        )
    else:  # four short legs
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                p.add(
                    _vcyl(sx * (W / 2 - 0.05), sy * (D / 2 - 0.05), 0.0, base_h + 0.01, 0.025),
                    "base",
                )
    if rng.random() < 0.4:  # overhanging top slab
        o = u(0.01, 0.04)
        p.add(_box((-W / 2 - o, -D / 2 - o, H), (W / 2 + o, D / 2 + o, H + u(0.02, 0.05))), "front")
    # front: columns of doors, rows of drawers, or drawers above doors
    layout = rng.choice(["doors", "drawers", "mixed"])
    m = 0.02
    fy0, fy1 = D / 2 - 0.04, D / 2 + 0.015
    z_lo, z_hi = base_h + m, H - m
    rows: list[tuple[float, float, int]] = []  # (z0, z1, columns)
    if layout == "drawers":
        n = int(rng.integers(2, 6))
        edges = np.linspace(z_lo, z_hi, n + 1)
        rows = [(edges[i], edges[i + 1], 1) for i in range(n)]
    elif layout == "doors":
        rows = [(z_lo, z_hi, int(rng.integers(1, 3)))]
    else:
        zs = z_lo + (z_hi - z_lo) * u(0.55, 0.75)
        rows = [(z_lo, zs, int(rng.integers(1, 3))), (zs, z_hi, 1)]
    handle_round = rng.random() < 0.5
    for z0, z1, ncol in rows:
        xe = np.linspace(-W / 2 + m, W / 2 - m, ncol + 1)
        for i in range(ncol):
            a, b = xe[i] + m / 2, xe[i + 1] - m / 2
            p.add(_box((a, fy0, z0 + m / 2), (b, fy1, z1 - m / 2)), "front")
            hx = (a + b) / 2 if ncol == 1 else (b - 0.05 if i == 0 else a + 0.05)
            hz = (z0 + z1) / 2 if z1 - z0 < 0.4 else z1 - 0.12
            if handle_round:
                p.add(Sphere(0.025, center=(hx, fy1 + 0.015, hz)), "handle")
            else:
                p.add(
                    _box((hx - 0.06, fy1, hz - 0.012), (hx + 0.06, fy1 + 0.03, hz + 0.012)),
                    "handle",
                )


def _car(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    kind = rng.choice(["sedan", "suv", "pickup", "van", "sport"])
    L, W = u(1.0, 1.3), u(0.42, 0.55)
    r_wheel = u(0.09, 0.14) * (1.2 if kind in ("suv", "pickup") else 1.0)
    clear = r_wheel * u(0.45, 0.75)
    hb = u(0.16, 0.26) * (0.8 if kind == "sport" else 1.0)
    z0, z1 = clear, clear + hb
    p.add(_rbox((-L / 2, -W / 2, z0), (L / 2, W / 2, z1), min(hb / 2.5, 0.06)), "body")
    hc = {"sedan": 0.18, "suv": 0.24, "pickup": 0.2, "van": 0.3, "sport": 0.13}[kind] * u(
        0.85, 1.15
    )
    if kind == "van":
        c0, c1 = -L / 2 + 0.02, L / 2 - L * u(0.12, 0.2)
    elif kind == "pickup":
        c1 = L / 2 - L * u(0.25, 0.32)
        c0 = c1 - L * u(0.25, 0.32)
    else:
        frac = u(0.4, 0.6)
        mid = L * u(-0.12, 0.05)
        c0, c1 = mid - frac * L / 2, mid + frac * L / 2
    wc = W / 2 - u(0.02, 0.05)
    p.add(_rbox((c0, -wc, z1 - 0.02), (c1, wc, z1 + hc), min(hc / 3, 0.05)), "glass")
    p.add(
        _box((c0 + 0.03, -wc + 0.01, z1 + hc - 0.015), (c1 - 0.03, wc - 0.01, z1 + hc + 0.01)),
        "body",
    )
    if kind == "pickup":  # open bed walls
        for sy in (-1.0, 1.0):
            y = sy * (W / 2 - 0.015)
            p.add(_box((-L / 2, y - 0.015, z1), (c0, y + 0.015, z1 + 0.08)), "body")
    wheelbase = L / 2 - r_wheel * u(1.1, 1.6)
    tire_w = u(0.035, 0.06)
    n_axles = 3 if (kind == "pickup" and rng.random() < 0.3) else 2
    xs = [wheelbase, -wheelbase] + ([-wheelbase + 2.3 * r_wheel] if n_axles == 3 else [])
    for x in xs:
        for sy in (-1.0, 1.0):
            y = sy * (W / 2 - tire_w * 0.6)
            p.add(Cylinder(r_wheel, tire_w, center=(x, y, r_wheel), axis="y"), "tire")
            p.add(
                Cylinder(
                    r_wheel * 0.55, tire_w * 0.3, center=(x, y + sy * tire_w, r_wheel), axis="y"
                ),
                "rim",
            )
    for sy in (-1.0, 1.0):  # headlights
        p.add(Sphere(0.03, center=(L / 2 - 0.015, sy * W * 0.32, z1 - hb * 0.35)), "light")
    if kind == "sport" or rng.random() < 0.2:  # spoiler on two posts
        zs = z1 + u(0.05, 0.09)
        p.add(
            _box((-L / 2 + 0.01, -W / 2 + 0.03, zs), (-L / 2 + 0.1, W / 2 - 0.03, zs + 0.02)),
            "body",
        )
        for sy in (-1.0, 1.0):
            p.add(
                _box(
                    (-L / 2 + 0.04, sy * W / 4 - 0.01, z1 - 0.01),
                    (-L / 2 + 0.07, sy * W / 4 + 0.01, zs),
                ),
                "body",
            )


def _chair(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    W, D, H = u(0.4, 0.6), u(0.4, 0.55), u(0.4, 0.52)
    t = u(0.04, 0.09)
    rounded = rng.random() < 0.5
    seat_lo, seat_hi = (-W / 2, -D / 2, H - t), (W / 2, D / 2, H)
    p.add(_rbox(seat_lo, seat_hi, t / 3) if rounded else _box(seat_lo, seat_hi), "seat")
    # backrest: a solid panel or slats under a top rail, tilted back
    B = u(0.3, 0.6)
    tb = u(0.03, 0.07)
    tilt = u(0.0, 16.0)
    R = rot_x(tilt)
    base = np.array([0.0, -D / 2 + tb / 2, H])

    def back_piece(cx: float, z0: float, z1: float, half_x: float) -> Box:
        c = base + R @ np.array([cx, 0.0, (z0 + z1) / 2])
        return Box((half_x, tb / 2, (z1 - z0) / 2), center=c, rotation=R)

    if rng.random() < 0.6:
        p.add(back_piece(0.0, 0.0, B, W / 2), "back")
    else:
        n = int(rng.integers(2, 6))
        rail = B * u(0.15, 0.3)
        p.add(back_piece(0.0, B - rail, B, W / 2), "back")
        for cx in np.linspace(-W / 2 + 0.03, W / 2 - 0.03, n):
            p.add(back_piece(float(cx), 0.0, B - rail, 0.02), "back")
    # support: 3-5 legs or a pedestal with a star base
    support = rng.choice(["legs4", "legs4", "legs3", "legs5", "pedestal"])
    lt = u(0.022, 0.045)
    if support == "pedestal":
        p.add(_vcyl(0.0, 0.0, 0.06, H - t, u(0.03, 0.05)), "legs")
        n = int(rng.integers(4, 6))
        reach = u(0.25, 0.35)
        for k in range(n):
            a = 2 * math.pi * k / n
            end = (reach * math.cos(a), reach * math.sin(a), 0.04)
            p.add(Capsule.between((0.0, 0.0, 0.07), end, 0.025), "legs")
            p.add(Sphere(0.035, center=(end[0], end[1], 0.035)), "legs")
    elif support == "legs4":
        square = rng.random() < 0.5
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                x, y = sx * (W / 2 - lt), sy * (D / 2 - lt)
                if square:
                    p.add(_box((x - lt, y - lt, 0.0), (x + lt, y + lt, H - t)), "legs")
                else:
                    p.add(_vcyl(x, y, 0.0, H - t, lt), "legs")
        if rng.random() < 0.35:  # stretchers between the legs
            zs = H * u(0.2, 0.4)
            for sx in (-1.0, 1.0):
                x = sx * (W / 2 - lt)
                p.add(
                    _box(
                        (x - lt / 2, -D / 2 + lt, zs - lt / 2),
                        (x + lt / 2, D / 2 - lt, zs + lt / 2),
                    ),
                    "legs",
                )
    else:
        n = 3 if support == "legs3" else 5
        rr = min(W, D) / 2 * 0.85
        splay = u(0.0, 0.08)
        for k in range(n):
            a = 2 * math.pi * k / n + math.pi / 2
            top = (rr * 0.8 * math.cos(a), rr * 0.8 * math.sin(a), H - t)
            foot = ((rr + splay) * math.cos(a), (rr + splay) * math.sin(a), lt)
            p.add(Capsule.between(foot, top, lt), "legs")
    if rng.random() < 0.4:  # armrests on posts
        ah = u(0.16, 0.26)
        for sx in (-1.0, 1.0):
            x = sx * (W / 2 + 0.02)
            p.add(_box((x - 0.03, -D / 2, H + ah - 0.03), (x + 0.03, D / 2 - 0.02, H + ah)), "arms")
            p.add(_box((x - 0.02, D / 2 - 0.08, H - t), (x + 0.02, D / 2 - 0.04, H + ah)), "arms")


def _display(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    Wd = u(0.6, 1.0)
    Hd = Wd * u(0.5, 0.78)
    t = u(0.03, 0.07)
    kind = rng.choice(["monitor", "monitor", "tv", "crt"])
    z_low = u(0.12, 0.3) if kind != "tv" else u(0.06, 0.12)
    zc = z_low + Hd / 2
    tilt = u(-8.0, 8.0) if kind == "monitor" else 0.0
    R = rot_x(tilt)
    p.add(Box((Wd / 2, t / 2, Hd / 2), center=(0.0, 0.0, zc), rotation=R), "frame")
    bezel = u(0.015, 0.05)
    p.add(
        Box(
            (Wd / 2 - bezel, t / 4 + 0.004, Hd / 2 - bezel),
            center=np.array([0.0, 0.0, zc]) + R @ np.array([0.0, t / 4, 0.0]),
            rotation=R,
        ),
        "screen",
    )
    if kind == "crt":  # deep rear shell
        dep = Wd * u(0.35, 0.6)
        p.add(
            Cone(
                Hd * 0.25,
                Hd * 0.45,
                dep / 2,
                center=(0.0, -t / 2 - dep / 2, zc),
                axis=(0.0, 1.0, 0.0),
            ),
            "frame",
        )
    if kind == "tv":  # two feet
        for sx in (-1.0, 1.0):
            x = sx * Wd * u(0.3, 0.42)
            p.add(
                Capsule.between((x, 0.0, z_low + 0.02), (x, 0.12, 0.015), 0.015),
                "stand",
            )
            p.add(Capsule.between((x, 0.0, z_low + 0.02), (x, -0.12, 0.015), 0.015), "stand")
    else:
        neck_w = u(0.04, 0.09)
        p.add(_box((-neck_w / 2, -t / 2 - 0.05, 0.0), (neck_w / 2, -t / 2 - 0.01, zc)), "stand")
        if rng.random() < 0.5:
            p.add(_box((-Wd * 0.22, -0.18, 0.0), (Wd * 0.22, 0.08, 0.025)), "stand")
        else:
            p.add(Cylinder(Wd * u(0.15, 0.22), 0.0125, center=(0.0, -0.05, 0.0125)), "stand")


def _lamp(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    base_r = u(0.1, 0.2)
    base_h = u(0.025, 0.06)
    if rng.random() < 0.5:
        p.add(Cylinder(base_r, base_h / 2, center=(0.0, 0.0, base_h / 2)), "base")
    else:
        p.add(Cone(base_r, base_r * u(0.3, 0.7), base_h, center=(0.0, 0.0, base_h)), "base")
    Hp = u(0.45, 1.1)
    pr = u(0.025, 0.04)
    p.add(_vcyl(0.0, 0.0, base_h, Hp, pr), "pole")
    n_arms = int(rng.integers(1, 4))
    top = np.array([0.0, 0.0, Hp])
    phase = u(0.0, 2 * math.pi)
    arm_len = u(0.15, 0.35)
    rise = u(-0.3, 0.6)
    shade_kind = rng.choice(["cone", "cone", "globe", "cylinder"])
    sh = u(0.09, 0.16)
    for k in range(n_arms):
        if n_arms == 1 and rng.random() < 0.4:  # shade straight on top of the pole
            end = top + np.array([0.0, 0.0, 0.02])
        else:
            a = phase + 2 * math.pi * k / n_arms
            d = np.array([math.cos(a), math.sin(a), rise])
            end = top + arm_len * d / np.linalg.norm(d[:2])
            p.add(Capsule.between(top, end, pr * 0.8), "pole")
        c = end - np.array([0.0, 0.0, sh * 0.6])
        if shade_kind == "globe":
            p.add(Sphere(sh * 0.8, center=c), "shade")
        elif shade_kind == "cylinder":
            p.add(Cylinder(sh * 0.7, sh * 0.7, center=c), "shade")
        else:
            p.add(Cone(sh * u(1.0, 1.4), sh * u(0.3, 0.6), sh * 0.7, center=c), "shade")


def _loudspeaker(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    round_body = rng.random() < 0.2
    W, D, H = u(0.3, 0.6), u(0.3, 0.5), u(0.45, 1.2)
    z0 = 0.0
    if rng.random() < 0.5:  # feet
        z0 = u(0.03, 0.08)
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                p.add(_vcyl(sx * W * 0.38, sy * D * 0.38, 0.0, z0 + 0.01, 0.025), "feet")
    if round_body:
        R0 = min(W, D) / 2
        p.add(_vcyl(0.0, 0.0, z0, z0 + H, R0), "box")
        p.add(Torus(R0 * 0.85, 0.02, center=(0.0, 0.0, z0 + H)), "ring")
        front = R0
    else:
        p.add(_rbox((-W / 2, -D / 2, z0), (W / 2, D / 2, z0 + H), u(0.005, 0.04)), "box")
        front = D / 2
    n = int(rng.integers(1, 5))
    max_r = min(W / 2 * 0.8, H / (2 * n + 0.5))
    z = z0 + H - 0.03
    radii = sorted(u(0.35, 1.0, n) * max_r)  # small tweeter on top, woofers below
    for r in radii:
        r = max(r, 0.03)
        z -= r + 0.02
        p.add(Cylinder(r, 0.012, center=(0.0, front, z), axis="y"), "driver")
        p.add(Torus(r, 0.012, center=(0.0, front + 0.005, z), axis="y"), "ring")
        z -= r
    if not round_body and rng.random() < 0.4:  # bass port
        p.add(Cylinder(0.03, 0.01, center=(W * 0.3, front, z0 + 0.08), axis="y"), "driver")


def _rifle(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    w = u(0.08, 0.11)
    rl, rh = u(0.3, 0.45), u(0.11, 0.16)
    p.add(_box((-rl / 2, -w / 2, -rh / 2), (rl / 2, w / 2, rh / 2)), "metal")
    bl = u(0.3, 0.55)
    br = u(0.035, 0.05)
    p.add(Cylinder(br, bl / 2, center=(rl / 2 + bl / 2, 0.0, rh * 0.15), axis="x"), "metal")
    if rng.random() < 0.7:  # fore-end / handguard
        fl = bl * u(0.4, 0.7)
        p.add(
            _box((rl / 2 - 0.02, -w * 0.55, -rh * 0.35), (rl / 2 + fl, w * 0.55, rh * 0.35)),
            "stock",
        )
    sl = u(0.25, 0.38)
    sh = u(0.12, 0.18)
    drop = u(3.0, 12.0)
    p.add(
        Box(
            (sl / 2, w * 0.45, sh / 2),
            center=(-rl / 2 - sl / 2 + 0.02, 0.0, -rh * 0.2),
            rotation=rot_y(drop),
        ),
        "stock",
    )
    gx = -rl / 2 + u(0.04, 0.1)
    p.add(
        Box(
            (0.025, w * 0.4, 0.06), center=(gx, 0.0, -rh / 2 - 0.05), rotation=rot_y(-u(10.0, 25.0))
        ),
        "stock",
    )
    if rng.random() < 0.75:  # magazine, straight or curved forward
        ml = u(0.1, 0.2)
        mx = rl / 2 - u(0.08, 0.14)
        p.add(
            Box(
                (0.035, w * 0.4, ml / 2),
                center=(mx, 0.0, -rh / 2 - ml / 2 + 0.01),
                rotation=rot_y(u(-25.0, 0.0)),
            ),
            "metal",
        )
    if rng.random() < 0.5:  # scope on two mounts
        scl = u(0.18, 0.3)
        scr = u(0.022, 0.035)
        zs = rh / 2 + scr + 0.02
        p.add(Cylinder(scr, scl / 2, center=(0.0, 0.0, zs), axis="x"), "scope")
        for sx in (-1.0, 1.0):
            p.add(
                _box(
                    (sx * scl / 4 - 0.01, -0.012, rh / 2 - 0.01), (sx * scl / 4 + 0.01, 0.012, zs)
                ),
                "scope",
            )


def _sofa(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    W, D = u(1.2, 2.0), u(0.7, 0.95)
    legs_h = u(0.0, 0.12)
    Hs = u(0.38, 0.48)
    base_top = Hs - u(0.08, 0.14)
    p.add(_rbox((-W / 2, -D / 2, legs_h), (W / 2, D / 2, base_top), 0.03), "base")
    tb = u(0.14, 0.25)
    Hb = Hs + u(0.3, 0.5)
    p.add(_rbox((-W / 2, -D / 2, base_top - 0.02), (W / 2, -D / 2 + tb, Hb), 0.05), "base")
    arm_style = rng.choice(["none", "low", "high", "high"])
    ta = u(0.1, 0.22)
    inner = W / 2
    if arm_style != "none":
        ha = Hs + (u(0.08, 0.15) if arm_style == "low" else u(0.18, 0.3))
        for sx in (-1.0, 1.0):
            x0, x1 = sorted((sx * W / 2, sx * (W / 2 - ta)))
            p.add(_rbox((x0, -D / 2, legs_h), (x1, D / 2, ha), 0.04), "base")
        inner = W / 2 - ta
    n = int(rng.integers(1, 4))
    xe = np.linspace(-inner, inner, n + 1)
    for i in range(n):
        p.add(
            _rbox(
                (xe[i] + 0.01, -D / 2 + tb, base_top - 0.02),
                (xe[i + 1] - 0.01, D / 2 - 0.01, Hs),
                0.04,
            ),
            "cushion",
        )
    if rng.random() < 0.25:  # chaise: an L-shaped extension on one side
        sx = rng.choice([-1.0, 1.0])
        ext = u(0.4, 0.7)
        cw = u(0.5, 0.7)
        x0, x1 = sorted((sx * (W / 2 - cw), sx * W / 2))
        p.add(_rbox((x0, D / 2 - 0.05, legs_h), (x1, D / 2 + ext, Hs), 0.04), "cushion")
    if legs_h > 0.03:
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                p.add(
                    _vcyl(sx * (W / 2 - 0.08), sy * (D / 2 - 0.08), 0.0, legs_h + 0.01, 0.025),
                    "legs",
                )


def _table(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    H = u(0.4, 0.78)
    t = u(0.03, 0.07)
    round_top = rng.random() < 0.4
    lt = u(0.025, 0.05)
    if round_top:
        R = u(0.35, 0.6)
        p.add(Cylinder(R, t / 2, center=(0.0, 0.0, H - t / 2)), "top")
        if rng.random() < 0.5:  # pedestal
            p.add(_vcyl(0.0, 0.0, 0.0, H - t, u(0.04, 0.08)), "legs")
            if rng.random() < 0.5:
                p.add(Cylinder(R * u(0.4, 0.6), 0.015, center=(0.0, 0.0, 0.015)), "legs")
            else:
                for k in range(4):
                    a = math.pi / 2 * k + math.pi / 4
                    p.add(
                        Capsule.between(
                            (0.0, 0.0, 0.03),
                            (R * 0.55 * math.cos(a), R * 0.55 * math.sin(a), 0.02),
                            0.025,
                        ),
                        "legs",
                    )
        else:
            n = int(rng.integers(3, 5))
            for k in range(n):
                a = 2 * math.pi * k / n
                p.add(_vcyl(R * 0.7 * math.cos(a), R * 0.7 * math.sin(a), 0.0, H - t, lt), "legs")
    else:
        L, W = u(0.8, 1.5), u(0.5, 0.9)
        p.add(_box((-L / 2, -W / 2, H - t), (L / 2, W / 2, H)), "top")
        inset = u(0.02, 0.12)
        if rng.random() < 0.25:  # trestle: two panel legs
            for sx in (-1.0, 1.0):
                x = sx * (L / 2 - inset - lt)
                p.add(_box((x - lt, -W / 2 + 0.05, 0.0), (x + lt, W / 2 - 0.05, H - t)), "legs")
        else:
            square = rng.random() < 0.5
            for sx in (-1.0, 1.0):
                for sy in (-1.0, 1.0):
                    x, y = sx * (L / 2 - inset - lt), sy * (W / 2 - inset - lt)
                    if square:
                        p.add(_box((x - lt, y - lt, 0.0), (x + lt, y + lt, H - t)), "legs")
                    else:
                        p.add(_vcyl(x, y, 0.0, H - t, lt), "legs")
        if rng.random() < 0.3:  # lower shelf
            zs = H * u(0.15, 0.35)
            a = L / 2 - inset - lt
            b = W / 2 - inset - lt
            p.add(_box((-a, -b, zs), (a, b, zs + 0.025)), "shelf")


def _telephone(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    if rng.random() < 0.65:  # a smartphone standing upright, screen towards +y
        h = u(0.9, 1.2)
        w = h * u(0.45, 0.58)
        t = h * u(0.07, 0.11)
        p.add(
            RoundedBox((w / 2, t / 2, h / 2), w * u(0.05, 0.15), center=(0.0, 0.0, h / 2)), "body"
        )
        m = w * u(0.03, 0.08)
        p.add(
            _box((-w / 2 + m, t / 4, m * 2), (w / 2 - m, t / 2 + 0.008, h - m * 2)),
            "screen",
        )
        n_lens = int(rng.integers(1, 4))
        lr = w * u(0.06, 0.1)
        for k in range(n_lens):
            p.add(
                Cylinder(
                    lr,
                    0.012,
                    center=(-w / 2 + 2.2 * lr, -t / 2, h - 2.2 * lr - k * 2.4 * lr),
                    axis="y",
                ),
                "lens",
            )
        if rng.random() < 0.6:  # side buttons
            for k in range(int(rng.integers(1, 4))):
                zb = h * (0.75 - 0.1 * k)
                p.add(
                    _box((w / 2 - 0.01, -0.02, zb - 0.04), (w / 2 + 0.012, 0.02, zb + 0.01)),
                    "button",
                )
    else:  # desk phone: a wedge base with a handset and a keypad
        bw, bd = u(0.7, 1.0), u(0.7, 0.95)
        bh = u(0.12, 0.22)
        slope = u(5.0, 15.0)
        p.add(_rbox((-bw / 2, -bd / 2, 0.0), (bw / 2, bd / 2, bh), 0.04), "body")
        hs_r = u(0.06, 0.09)
        hx = -bw / 2 + hs_r + u(0.08, 0.15)
        p.add(Capsule(hs_r * 0.7, bd * 0.35, center=(hx, 0.0, bh + hs_r * 0.8), axis="y"), "body")
        for sy in (-1.0, 1.0):
            p.add(
                Ellipsoid(
                    (hs_r, hs_r * 1.2, hs_r * 0.8), center=(hx, sy * bd * 0.38, bh + hs_r * 0.6)
                ),
                "body",
            )
        rows, cols = 4, 3
        kx0 = hx + hs_r + 0.1
        kx1 = bw / 2 - 0.08
        R = rot_y(-slope)
        for i in range(rows):
            for j in range(cols):
                x = kx0 + (kx1 - kx0) * (j + 0.5) / cols
                y = bd * 0.3 - (bd * 0.6) * (i + 0.5) / rows
                p.add(Box((0.03, 0.03, 0.015), center=(x, y, bh + 0.01), rotation=R), "button")


def _watercraft(rng: np.random.Generator, p: _Parts) -> None:
    u = rng.uniform
    L = u(1.0, 1.4)
    W = L * u(0.22, 0.35)
    Dh = u(0.12, 0.22)
    if rng.random() < 0.6:  # round-bottomed hull: the lower half of an ellipsoid
        hull = Intersection(Ellipsoid((L / 2, W / 2, Dh)), HalfSpace((0.0, 0.0, 1.0)))
    else:  # flat-sided hull with a pointed bow
        bow = u(0.2, 0.35) * L
        body = _box((-L / 2, -W / 2, -Dh), (L / 2, W / 2, 0.0))
        hull = Intersection(
            body,
            HalfSpace((W / 2, bow, 0.0), point=(L / 2, 0.0, 0.0)),
            HalfSpace((W / 2, -bow, 0.0), point=(L / 2, 0.0, 0.0)),
            HalfSpace((-0.4, 0.0, -1.0), point=(-L / 2, 0.0, -Dh * 0.4)),
        )
    p.add(hull, "hull")
    kind = rng.choice(["sail", "motor", "ship"])
    deck_w = W * 0.42
    if kind == "sail":
        mh = L * u(0.6, 1.0)
        mx = L * u(-0.05, 0.15)
        p.add(_vcyl(mx, 0.0, -0.02, mh, 0.025), "mast")
        boom = L * u(0.3, 0.45)
        p.add(Cylinder(0.014, boom / 2, center=(mx - boom / 2, 0.0, 0.1), axis="x"), "mast")
        sail = _box((mx - boom, -0.015, 0.11), (mx - 0.02, 0.015, mh))
        cut = HalfSpace((-(mh - 0.11), 0.0, boom), point=(mx - boom, 0.0, 0.11))
        p.add(Intersection(sail, cut), "sail")
        if rng.random() < 0.6:  # jib in front of the mast
            jl = (L / 2 - mx) * 0.8
            jib = _box((mx + 0.02, -0.015, 0.05), (mx + jl, 0.015, mh * 0.8))
            jcut = HalfSpace((mh * 0.8 - 0.05, 0.0, jl - 0.02), point=(mx + jl, 0.0, 0.05))
            p.add(Intersection(jib, jcut), "sail")
        p.add(_box((-L * 0.4, -deck_w, -0.02), (L * 0.3, deck_w, 0.01)), "deck")
    elif kind == "motor":
        cl = L * u(0.25, 0.4)
        cx = L * u(-0.15, 0.1)
        ch = u(0.08, 0.16)
        p.add(_rbox((cx - cl / 2, -deck_w, -0.01), (cx + cl / 2, deck_w, ch), 0.03), "cabin")
        p.add(
            Box(
                (0.01, deck_w * 0.9, ch * 0.5),
                center=(cx + cl / 2 + 0.05, 0.0, ch * 0.6),
                rotation=rot_y(-30.0),
            ),
            "cabin",
        )
        p.add(_box((-L * 0.45, -deck_w * 1.1, -0.02), (L * 0.35, deck_w * 1.1, 0.01)), "deck")
    else:
        n = int(rng.integers(1, 4))
        z = 0.0
        length = L * u(0.45, 0.6)
        x0 = L * u(-0.2, 0.0)
        width = W * 0.8
        for _ in range(n):  # stacked superstructure decks
            hd = u(0.06, 0.1)
            p.add(
                _box((x0 - length / 2, -width / 2, z - 0.01), (x0 + length / 2, width / 2, z + hd)),
                "cabin",
            )
            z += hd
            length *= u(0.55, 0.8)
            width *= 0.85
        for k in range(int(rng.integers(1, 3))):
            fx = x0 - 0.05 - k * 0.14
            p.add(_vcyl(fx, 0.0, z - 0.02, z + u(0.1, 0.2), u(0.035, 0.06)), "funnel")


_BUILDERS: dict[str, Callable[[np.random.Generator, _Parts], None]] = {
    "airplane": _airplane,
    "bench": _bench,
    "cabinet": _cabinet,
    "car": _car,
    "chair": _chair,
    "display": _display,
    "lamp": _lamp,
    "loudspeaker": _loudspeaker,
    "rifle": _rifle,
    "sofa": _sofa,
    "table": _table,
    "telephone": _telephone,
    "watercraft": _watercraft,
}
assert tuple(_BUILDERS) == CLASSES


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _size_fraction(index: int, seed: int) -> float:
    """Where in :data:`SIZE_RANGE` object ``seed`` of class ``index`` falls, in [0, 1).

    A golden-ratio (Weyl) sequence over seeds with a per-class offset: sizes are spread evenly
    over the range for every class, so any 4 consecutive seeds of a class cover at least
    [0.382, 0.618] of it (the largest gap of 4 such points is 0.382), whatever the class.
    """
    return (index * 0.5 * _GOLDEN + seed * _GOLDEN) % 1.0


def make_scene(
    class_name: str,
    seed: int,
    density: float = DEFAULT_DENSITY,
    edge: float = 0.0,
    aabb: Sequence[float] = DEFAULT_AABB,
) -> ProceduralScene:
    """The procedural object ``(class_name, seed)``: deterministic, normalised into the AABB.

    Args:
        class_name: one of :data:`CLASSES`.
        seed: non-negative integer; different seeds give visibly different instances.
        density, edge, aabb: see :class:`~graphnerf.scenes.base.Scene`.
    """
    if class_name not in _BUILDERS:
        raise ValueError(f"unknown class {class_name!r}; expected one of {', '.join(CLASSES)}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    index = CLASSES.index(class_name)
    rng = np.random.default_rng([index, seed])
    lo, hi = SIZE_RANGE
    size = lo + (hi - lo) * _size_fraction(index, seed)
    parts = _Parts(rng, PALETTES[class_name])
    _BUILDERS[class_name](rng, parts)
    return ProceduralScene(
        parts.union(), class_name, seed, size=size, aabb=aabb, density=density, edge=edge
    )
