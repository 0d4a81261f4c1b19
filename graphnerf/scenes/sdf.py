"""Vectorised signed distance functions (torch) for building procedural shapes out of parts.

Every node is a callable ``sdf(x [N, 3]) -> d [N]`` (negative inside) with a conservative
world-space bounding box ``bounds -> (lo [3], hi [3])`` (numpy). Primitives are defined in a local
frame and placed by a ``center`` and a ``rotation`` (3x3 matrix, wxyz quaternion, or ``None``):
``local = R^T (x - center)``. Cylinders, capsules and cones take an ``axis`` (``"x"``, ``"y"``,
``"z"`` or a vector) for their local z axis, applied before ``rotation``.

The distances are exact for box, rounded box, cylinder, capsule, cone and torus, approximate
(a bound that is exact on the surface) for the ellipsoid, and the usual min/max bounds for the
combinators. :class:`PartUnion` is the union that remembers which part is closest, so each part
keeps its own colour. Evaluation loops over parts (a handful), never over points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SDF",
    "Box",
    "Capsule",
    "Cone",
    "Cylinder",
    "Difference",
    "Ellipsoid",
    "HalfSpace",
    "Intersection",
    "PartUnion",
    "Primitive",
    "RoundedBox",
    "Sphere",
    "Torus",
    "Union",
    "rot_x",
    "rot_y",
    "rot_z",
    "rotation_from_z",
]

Vec3 = Sequence[float] | np.ndarray
RotationLike = np.ndarray | Sequence[float] | Sequence[Sequence[float]] | Tensor | None


# ---------------------------------------------------------------------------------------------
# small numpy rotation helpers (building shapes happens in numpy, evaluation in torch)


def rot_x(deg: float) -> np.ndarray:
    """Rotation matrix about +x by ``deg`` degrees."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    """Rotation matrix about +y by ``deg`` degrees."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> np.ndarray:
    """Rotation matrix about +z by ``deg`` degrees."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def rotation_from_z(direction: str | Vec3) -> np.ndarray:
    """A rotation matrix taking +z to ``direction`` (normalised); the minimal one (Rodrigues)."""
    d = np.asarray(_AXES[direction] if isinstance(direction, str) else direction, dtype=float)
    n = np.linalg.norm(d)
    if d.shape != (3,) or n == 0:
        raise ValueError(f"direction must be 'x', 'y', 'z' or a non-zero 3-vector, got {direction}")
    d = d / n
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, d)
    c = float(d @ z)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _as_rotation(rotation: RotationLike) -> np.ndarray:
    if rotation is None:
        return np.eye(3)
    r = np.asarray(rotation.detach().cpu() if isinstance(rotation, Tensor) else rotation, float)
    if r.shape == (4,):  # wxyz quaternion
        w, x, y, z = r / np.linalg.norm(r)
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )
    if r.shape != (3, 3):
        raise ValueError(f"rotation must be a 3x3 matrix or a wxyz quaternion, got {r.shape}")
    return r


def _vec3(v: Vec3 | float, name: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(v, dtype=float), (3,)).copy()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {v}")
    return a


def _positive(v: float, name: str) -> float:
    if not v > 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return float(v)


# ---------------------------------------------------------------------------------------------
# nodes


class SDF:
    """Base node: ``__call__(x [N, 3]) -> d [N]`` and a conservative AABB ``bounds``."""

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __or__(self, other: SDF) -> SDF:
        return Union(self, other)

    def __and__(self, other: SDF) -> SDF:
        return Intersection(self, other)

    def __sub__(self, other: SDF) -> SDF:
        return Difference(self, other)


class Primitive(SDF):
    """A shape in a local frame, placed by ``center`` and ``rotation`` (local -> world)."""

    def __init__(self, center: Vec3 = (0.0, 0.0, 0.0), rotation: RotationLike = None) -> None:
        self.center = _vec3(center, "center")
        self.rotation = _as_rotation(rotation)

    def local_sdf(self, p: Tensor) -> Tensor:
        """Distance for points ``p [N, 3]`` in the local frame."""
        raise NotImplementedError

    def local_half_extent(self) -> np.ndarray:
        """Half size of the local bounding box (centred at the local origin)."""
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        c = x.new_tensor(self.center)
        R = x.new_tensor(self.rotation)
        return self.local_sdf((x - c) @ R)  # row-vector form of R^T (x - c)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        h = np.abs(self.rotation) @ self.local_half_extent()
        return self.center - h, self.center + h

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center={np.round(self.center, 3).tolist()})"


class _AxisPrimitive(Primitive):
    """A primitive whose local z axis is set by ``axis`` before ``rotation`` is applied."""

    def __init__(
        self, center: Vec3 = (0.0, 0.0, 0.0), rotation: RotationLike = None, axis: str | Vec3 = "z"
    ) -> None:
        super().__init__(center, rotation)
        self.rotation = self.rotation @ rotation_from_z(axis)


def _box_distance(p: Tensor, half: Tensor) -> Tensor:
    q = p.abs() - half
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside


class Box(Primitive):
    """Box with half extents ``half`` (exact distance)."""

    def __init__(self, half: Vec3, center: Vec3 = (0.0, 0.0, 0.0), rotation: RotationLike = None):
        super().__init__(center, rotation)
        self.half = _vec3(half, "half")
        if np.any(self.half <= 0):
            raise ValueError(f"half extents must be positive, got {half}")

    def local_sdf(self, p: Tensor) -> Tensor:
        return _box_distance(p, p.new_tensor(self.half))

    def local_half_extent(self) -> np.ndarray:
        return self.half


class RoundedBox(Box):
    """Box with half extents ``half`` whose edges are rounded with ``radius`` (exact distance).

    ``radius`` is clamped to the smallest half extent.
    """

    def __init__(
        self,
        half: Vec3,
        radius: float,
        center: Vec3 = (0.0, 0.0, 0.0),
        rotation: RotationLike = None,
    ) -> None:
        super().__init__(half, center, rotation)
        self.radius = min(max(float(radius), 0.0), float(self.half.min()) * 0.999)

    def local_sdf(self, p: Tensor) -> Tensor:
        return _box_distance(p, p.new_tensor(self.half - self.radius)) - self.radius


class Sphere(Primitive):
    """Sphere of ``radius``."""

    def __init__(self, radius: float, center: Vec3 = (0.0, 0.0, 0.0)) -> None:
        super().__init__(center, None)
        self.radius = _positive(radius, "radius")

    def local_sdf(self, p: Tensor) -> Tensor:
        return p.norm(dim=-1) - self.radius

    def local_half_extent(self) -> np.ndarray:
        return np.full(3, self.radius)


class Cylinder(_AxisPrimitive):
    """Capped cylinder along local z: ``radius``, length ``2 * half_height`` (exact)."""

    def __init__(
        self,
        radius: float,
        half_height: float,
        center: Vec3 = (0.0, 0.0, 0.0),
        rotation: RotationLike = None,
        axis: str | Vec3 = "z",
    ) -> None:
        super().__init__(center, rotation, axis)
        self.radius = _positive(radius, "radius")
        self.half_height = _positive(half_height, "half_height")

    def local_sdf(self, p: Tensor) -> Tensor:
        d = torch.stack(
            (p[:, :2].norm(dim=-1) - self.radius, p[:, 2].abs() - self.half_height), dim=-1
        )
        return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0)

    def local_half_extent(self) -> np.ndarray:
        return np.array([self.radius, self.radius, self.half_height])


class Capsule(_AxisPrimitive):
    """Segment of length ``2 * half_length`` along local z, swept by a ball of ``radius``."""

    def __init__(
        self,
        radius: float,
        half_length: float,
        center: Vec3 = (0.0, 0.0, 0.0),
        rotation: RotationLike = None,
        axis: str | Vec3 = "z",
    ) -> None:
        super().__init__(center, rotation, axis)
        self.radius = _positive(radius, "radius")
        self.half_length = max(float(half_length), 0.0)

    @classmethod
    def between(cls, a: Vec3, b: Vec3, radius: float) -> Capsule:
        """The capsule around the segment from ``a`` to ``b``."""
        a, b = _vec3(a, "a"), _vec3(b, "b")
        d = b - a
        length = float(np.linalg.norm(d))
        axis = d if length > 0 else (0.0, 0.0, 1.0)
        return cls(radius, length / 2, center=(a + b) / 2, axis=axis)

    def local_sdf(self, p: Tensor) -> Tensor:
        z = p[:, 2].clamp(-self.half_length, self.half_length)
        return torch.stack((p[:, 0], p[:, 1], p[:, 2] - z), dim=-1).norm(dim=-1) - self.radius

    def local_half_extent(self) -> np.ndarray:
        return np.array([self.radius, self.radius, self.half_length + self.radius])


def _segment_distance_2d(q: Tensor, a: tuple[float, float], b: tuple[float, float]) -> Tensor:
    """Distance from 2D points ``q [N, 2]`` to the segment a-b (a point if a == b)."""
    a_t = q.new_tensor(a)
    ab = q.new_tensor(b) - a_t
    t = ((q - a_t) @ ab / (ab @ ab).clamp(min=1e-20)).clamp(0.0, 1.0)
    return (q - a_t - t[:, None] * ab).norm(dim=-1)


class Cone(_AxisPrimitive):
    """Capped cone (frustum) along local z: radius ``r_bottom`` at z = -h, ``r_top`` at z = +h.

    Exact distance: the 2D distance, in the (radial, z) half plane, to the profile trapezoid's
    three boundary segments (bottom cap, slanted side, top cap), signed by the inside test.
    Either radius may be 0 (a pointed cone), not both.
    """

    def __init__(
        self,
        r_bottom: float,
        r_top: float,
        half_height: float,
        center: Vec3 = (0.0, 0.0, 0.0),
        rotation: RotationLike = None,
        axis: str | Vec3 = "z",
    ) -> None:
        super().__init__(center, rotation, axis)
        self.r_bottom, self.r_top = float(r_bottom), float(r_top)
        if min(self.r_bottom, self.r_top) < 0 or max(self.r_bottom, self.r_top) <= 0:
            raise ValueError(f"cone radii must be >= 0 and not both 0, got {r_bottom}, {r_top}")
        self.half_height = _positive(half_height, "half_height")

    def local_sdf(self, p: Tensor) -> Tensor:
        h, r0, r1 = self.half_height, self.r_bottom, self.r_top
        q = torch.stack((p[:, :2].norm(dim=-1), p[:, 2]), dim=-1)
        d = torch.minimum(
            torch.minimum(
                _segment_distance_2d(q, (0.0, -h), (r0, -h)),
                _segment_distance_2d(q, (0.0, h), (r1, h)),
            ),
            _segment_distance_2d(q, (r0, -h), (r1, h)),
        )
        radius_at_z = r0 + (r1 - r0) * (q[:, 1] + h) / (2 * h)
        inside = (q[:, 1].abs() <= h) & (q[:, 0] <= radius_at_z)
        return torch.where(inside, -d, d)

    def local_half_extent(self) -> np.ndarray:
        r = max(self.r_bottom, self.r_top)
        return np.array([r, r, self.half_height])


class Torus(_AxisPrimitive):
    """Torus around local z: ring radius ``major``, tube radius ``minor`` (exact)."""

    def __init__(
        self,
        major: float,
        minor: float,
        center: Vec3 = (0.0, 0.0, 0.0),
        rotation: RotationLike = None,
        axis: str | Vec3 = "z",
    ) -> None:
        super().__init__(center, rotation, axis)
        self.major = _positive(major, "major")
        self.minor = _positive(minor, "minor")

    def local_sdf(self, p: Tensor) -> Tensor:
        ring = p[:, :2].norm(dim=-1) - self.major
        return torch.stack((ring, p[:, 2]), dim=-1).norm(dim=-1) - self.minor

    def local_half_extent(self) -> np.ndarray:
        r = self.major + self.minor
        return np.array([r, r, self.minor])


class Ellipsoid(Primitive):
    """Axis-aligned (in the local frame) ellipsoid with semi-axes ``radii``.

    Approximate distance ``k0 (k0 - 1) / k1`` with ``k0 = |p / r|``, ``k1 = |p / r^2|``: exact sign,
    exact zero set, close to the true distance near the surface.
    """

    def __init__(
        self, radii: Vec3, center: Vec3 = (0.0, 0.0, 0.0), rotation: RotationLike = None
    ) -> None:
        super().__init__(center, rotation)
        self.radii = _vec3(radii, "radii")
        if np.any(self.radii <= 0):
            raise ValueError(f"radii must be positive, got {radii}")

    def local_sdf(self, p: Tensor) -> Tensor:
        r = p.new_tensor(self.radii)
        k0 = (p / r).norm(dim=-1)
        k1 = (p / (r * r)).norm(dim=-1).clamp(min=1e-12)
        return k0 * (k0 - 1.0) / k1

    def local_half_extent(self) -> np.ndarray:
        return self.radii


class HalfSpace(SDF):
    """``{x : n . (x - point) <= 0}``: the side opposite to ``normal``. Unbounded; intersect it."""

    def __init__(self, normal: Vec3, point: Vec3 = (0.0, 0.0, 0.0)) -> None:
        n = _vec3(normal, "normal")
        if np.linalg.norm(n) == 0:
            raise ValueError("normal must be non-zero")
        self.normal = n / np.linalg.norm(n)
        self.point = _vec3(point, "point")

    def __call__(self, x: Tensor) -> Tensor:
        return (x - x.new_tensor(self.point)) @ x.new_tensor(self.normal)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
        for i in range(3):  # an axis-aligned half space bounds one side
            if abs(abs(self.normal[i]) - 1.0) < 1e-12:
                (hi if self.normal[i] > 0 else lo)[i] = self.point[i]
        return lo, hi


class _Combination(SDF):
    """The children's distances combined point-wise by :attr:`combine` (``min`` or ``max``)."""

    combine = staticmethod(torch.amin)

    def __init__(self, *children: SDF) -> None:
        if not children:
            raise ValueError(f"{type(self).__name__} needs at least one child")
        self.children = children

    def __call__(self, x: Tensor) -> Tensor:
        return self.combine(torch.stack([c(x) for c in self.children]), dim=0)

    def _child_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        b = [c.bounds for c in self.children]
        return np.array([lo for lo, _ in b]), np.array([hi for _, hi in b])


class Union(_Combination):
    """``min`` of the children (exact outside, a bound inside)."""

    combine = staticmethod(torch.amin)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._child_bounds()
        return lo.min(axis=0), hi.max(axis=0)


class Intersection(_Combination):
    """``max`` of the children (a bound on the distance)."""

    combine = staticmethod(torch.amax)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self._child_bounds()
        return lo.max(axis=0), hi.min(axis=0)


class Difference(SDF):
    """``a`` minus ``b``: ``max(d_a, -d_b)``."""

    def __init__(self, a: SDF, b: SDF) -> None:
        self.a, self.b = a, b

    def __call__(self, x: Tensor) -> Tensor:
        return torch.maximum(self.a(x), -self.b(x))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.a.bounds


class PartUnion:
    """A union of coloured parts that keeps, per point, the part that colours it.

    Outside the union that is the closest part (smallest distance). Inside, where parts overlap,
    the part added *last* wins, like paint: a decal (screen, drawer front, window) embedded in a
    body colours the body's surface and the material just below it, whatever the sample depth.

    Args:
        parts: the part shapes.
        colors: one RGB colour in [0, 1] per part, ``[P, 3]``.
    """

    def __init__(self, parts: Sequence[SDF], colors: np.ndarray | Sequence[Vec3]) -> None:
        if len(parts) == 0:
            raise ValueError("PartUnion needs at least one part")
        self.parts = list(parts)
        self.colors = np.clip(np.asarray(colors, dtype=float).reshape(-1, 3), 0.0, 1.0)
        if len(self.colors) != len(self.parts):
            raise ValueError(f"need one colour per part: {len(self.colors)} for {len(parts)}")

    def __len__(self) -> int:
        return len(self.parts)

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(d [N], part [N] long)``: union distance and the index of the colouring part."""
        d = torch.stack([p(x) for p in self.parts])
        dist, closest = d.min(dim=0)
        inside = d < 0
        last_inside = len(self.parts) - 1 - inside.flip(0).to(torch.uint8).argmax(dim=0)
        return dist, torch.where(inside.any(dim=0), last_inside, closest)

    def __call__(self, x: Tensor) -> Tensor:
        return self.evaluate(x)[0]

    def color(self, part: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """RGB ``[N, 3]`` of part indices ``[N]``."""
        table = torch.as_tensor(self.colors, dtype=dtype or torch.get_default_dtype())
        return table.to(part.device)[part]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return Union(*self.parts).bounds

    def bounding_radius(self, center: np.ndarray) -> float:
        """A radius around ``center`` whose ball holds every part (via the corners of its box)."""
        r = 0.0
        for p in self.parts:
            lo, hi = p.bounds
            far = np.maximum(np.abs(lo - center), np.abs(hi - center))
            r = max(r, float(np.linalg.norm(far)))
        return r
