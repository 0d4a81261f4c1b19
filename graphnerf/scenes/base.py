"""`Scene`: a ground-truth object that renders like a radiance field, and its rotated copies.

A scene answers ``query(x [N, 3]) -> (sigma [N], rgb [N, 3])`` for world points ``x``, the same
contract as a :class:`graphnerf.fields.RadianceField`, so the renderer and the fitting code treat
both alike (``scene(x)`` is ``scene.query(x)``).

Density. A solid object is a step: ``sigma = density`` inside, ``0`` outside (``edge = 0``, the
default). With ``edge > 0`` and a scene that has a signed distance (the procedural classes), the
step is softened to ``density * sigmoid(-sdf / edge)``: a transition about ``4 * edge`` wide that
is easier for a field to fit. ``occupancy`` is always the hard inside test. Everything outside
the AABB is empty (sigma = 0, rgb = 0).

Colour. Inside the AABB, ``rgb`` is the colour of the closest part (procedural scenes) or of the
nearest surface (meshes), also in empty space, so it is smooth across the surface; where
``sigma = 0`` it carries no meaning for rendering.

Rotation. ``scene.rotated(q)`` is the same object turned by the unit quaternion ``q`` (wxyz) about
the AABB centre: ``scene.rotated(q).query(R x) == scene.query(x)`` with ``R = quat_to_matrix(q)``.
Objects are scaled so that their bounding *sphere* fits inside the AABB, so every rotation of
them stays inside it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .rotations import identity_quat, quat_multiply, quat_to_matrix

__all__ = ["DEFAULT_AABB", "DEFAULT_DENSITY", "RotatedScene", "Scene"]

DEFAULT_AABB: tuple[float, ...] = (-0.7, -0.7, -0.7, 0.7, 0.7, 0.7)
DEFAULT_DENSITY = 200.0  # per world unit: a 0.02 step through a solid has alpha 0.98


def _as_points(x: Tensor | Sequence) -> tuple[Tensor, tuple[int, ...]]:
    x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    if x.shape[-1:] != (3,):
        raise ValueError(f"points must have shape [..., 3], got {tuple(x.shape)}")
    return x.reshape(-1, 3), tuple(x.shape[:-1])


class Scene:
    """Base class of ground-truth scenes (see the module docstring for the conventions).

    Subclasses implement :meth:`_occupied` and :meth:`_evaluate` for points already known to be
    inside the AABB; :meth:`sdf` when they have a signed distance.

    Args:
        name: unique object name (e.g. ``"chair_0003"`` or a mesh file stem).
        class_name: the category (e.g. ``"chair"``, ``"mesh"``).
        seed: the seed that made the object, if any.
        aabb: ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        density: sigma inside the object, per world unit.
        edge: width of the soft density edge (0 = hard step); only used with an SDF.
    """

    def __init__(
        self,
        name: str,
        class_name: str,
        seed: int | None = None,
        aabb: Sequence[float] = DEFAULT_AABB,
        density: float = DEFAULT_DENSITY,
        edge: float = 0.0,
    ) -> None:
        aabb = tuple(float(v) for v in aabb)
        if len(aabb) != 6 or not all(lo < hi for lo, hi in zip(aabb[:3], aabb[3:], strict=True)):
            raise ValueError(f"aabb must be (xmin, ymin, zmin, xmax, ymax, zmax), got {aabb}")
        if not density > 0:
            raise ValueError(f"density must be positive, got {density}")
        if not edge >= 0:
            raise ValueError(f"edge must be >= 0, got {edge}")
        self.name = str(name)
        self.class_name = str(class_name)
        self.seed = seed
        self.aabb = aabb
        self.density = float(density)
        self.edge = float(edge)

    # ----------------------------------------------------------------- subclass interface

    def _occupied(self, x: Tensor) -> Tensor:
        """Inside test ``bool [M]`` for points ``[M, 3]`` inside the AABB."""
        raise NotImplementedError

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(occupied bool [M], rgb [M, 3], sdf [M] or None)`` for points inside the AABB."""
        raise NotImplementedError

    def sdf(self, x: Tensor) -> Tensor | None:
        """Signed distance (negative inside) at world points, or ``None`` if the scene has none."""
        return None

    # ----------------------------------------------------------------- public API

    @property
    def rotation(self) -> Tensor:
        """The wxyz quaternion this scene is rotated by (identity for a base scene)."""
        return identity_quat()

    @property
    def center(self) -> Tensor:
        """Centre of the AABB: the rotation centre."""
        lo, hi = torch.tensor(self.aabb[:3]), torch.tensor(self.aabb[3:])
        return (lo + hi) / 2

    def in_aabb(self, x: Tensor) -> Tensor:
        """``bool [N]``: points inside the (closed) AABB."""
        lo, hi = x.new_tensor(self.aabb[:3]), x.new_tensor(self.aabb[3:])
        return ((x >= lo) & (x <= hi)).all(dim=-1)

    def occupancy(self, x: Tensor) -> Tensor:
        """``bool [...]``: points inside the object (always False outside the AABB)."""
        x, shape = _as_points(x)
        inside = self.in_aabb(x)
        occ = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if inside.any():
            occ[inside] = self._occupied(x[inside])
        return occ.reshape(shape)

    def _sigma(self, occupied: Tensor, sdf: Tensor | None, dtype: torch.dtype) -> Tensor:
        if self.edge > 0 and sdf is not None:
            return self.density * torch.sigmoid(-sdf.to(dtype) / self.edge)
        return occupied.to(dtype) * self.density

    def _query_inside(self, x: Tensor) -> tuple[Tensor, Tensor]:
        occupied, rgb, sdf = self._evaluate(x)
        return self._sigma(occupied, sdf, x.dtype), rgb.to(x.dtype)

    def query(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma [...], rgb [...,3])`` at world points ``x [..., 3]`` (zero outside the AABB)."""
        x, shape = _as_points(x)
        inside = self.in_aabb(x)
        sigma = x.new_zeros(x.shape[0])
        rgb = x.new_zeros(x.shape[0], 3)
        if inside.all():
            sigma, rgb = self._query_inside(x)
        elif inside.any():
            sigma[inside], rgb[inside] = self._query_inside(x[inside])
        return sigma.reshape(shape), rgb.reshape(*shape, 3)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.query(x)

    def rotated(self, q: Tensor | Sequence[float]) -> Scene:
        """The same object rotated by the quaternion ``q`` (wxyz) about the AABB centre."""
        return RotatedScene(self, q)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, class_name={self.class_name!r})"


class RotatedScene(Scene):
    """``base`` turned by ``q`` about the AABB centre: ``query(R x) == base.query(x)``.

    Density, edge and colours are the base scene's. Rotating a rotated scene composes the
    rotations (``q2 * q1``) into one wrapper around the original base.
    """

    def __init__(self, base: Scene, q: Tensor | Sequence[float]) -> None:
        q = torch.as_tensor(q, dtype=torch.float64)
        if q.shape != (4,) or not torch.isfinite(q).all() or q.norm() == 0:
            raise ValueError(f"q must be a non-zero wxyz quaternion [4], got {q}")
        q = q / q.norm()
        if isinstance(base, RotatedScene):
            q = quat_multiply(q, base.q)
            base = base.base
        if q[0] < 0:
            q = -q
        super().__init__(base.name, base.class_name, base.seed, base.aabb, base.density, base.edge)
        self.base = base
        self.q = q
        self._R = quat_to_matrix(q)

    @property
    def rotation(self) -> Tensor:
        return self.q.float()

    def _to_base(self, x: Tensor) -> Tensor:
        c = self.center.to(x)
        return (x - c) @ self._R.to(x) + c  # row form of R^T (x - c) + c

    def _occupied(self, x: Tensor) -> Tensor:
        return self.base.occupancy(self._to_base(x))

    def _query_inside(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.query(self._to_base(x))

    def sdf(self, x: Tensor) -> Tensor | None:
        x, shape = _as_points(x)
        d = self.base.sdf(self._to_base(x))
        return None if d is None else d.reshape(shape)

    def __repr__(self) -> str:
        q = [round(v, 4) for v in self.q.tolist()]
        return f"RotatedScene({self.base!r}, q={q})"
