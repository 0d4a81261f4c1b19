"""Pinhole cameras and standard camera rigs.

Conventions (shared by the whole library):

- World space is right-handed with **+z up**.
- ``c2w`` is a camera-to-world rigid transform in the **OpenGL** convention: in camera space the
  camera looks down ``-z``, ``+y`` is up in the image and ``+x`` is to the right.
- Pixel ``(row, col)`` has its centre at image coordinates ``(u, v) = (col + 0.5, row + 0.5)``,
  ``u`` growing rightwards and ``v`` downwards, so ``(cx, cy) = (W / 2, H / 2)`` is the image
  centre. Intrinsics ``fx, fy, cx, cy`` are in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "EVAL_FILL",
    "EVAL_FOV_DEG",
    "EVAL_RADIUS",
    "EVAL_VIEWS",
    "Camera",
    "bounding_sphere",
    "eval_cameras",
    "framing_distance",
    "framing_distance_points",
    "look_at",
    "orbit_cameras",
    "spherical_to_cartesian",
]

#: Held-out evaluation views as ``(azimuth_deg, elevation_deg)``: azimuth measured in the xy-plane
#: from +x towards +y, elevation above the xy-plane. Two views above and two below the equator.
EVAL_VIEWS: tuple[tuple[float, float], ...] = (
    (45.0, 20.0),
    (135.0, -15.0),
    (225.0, 20.0),
    (315.0, -15.0),
)
#: Distance of the evaluation cameras from the origin (world units).
EVAL_RADIUS: float = 3.0
#: Vertical (= horizontal for square images) field of view of the evaluation cameras, degrees.
#: With ``EVAL_RADIUS = 3`` the sphere bounding the default AABB [-0.7, 0.7]^3 (radius
#: 0.7 * sqrt(3) ~ 1.21) subtends a half-angle of asin(1.21 / 3) ~ 23.8 deg < 25 deg, so the whole
#: box is in view for any square image.
EVAL_FOV_DEG: float = 50.0
#: Share of the field of view the framed bounding sphere spans (its angular diameter / the field
#: of view): the sphere's outline stays just inside the frame, so the object fills most of it.
EVAL_FILL: float = 0.95
#: Radius of the sphere bounding the default AABB [-0.7, 0.7]^3 (world units).
_DEFAULT_BOX_RADIUS: float = 0.7 * math.sqrt(3.0)


@dataclass
class Camera:
    """A pinhole camera.

    Attributes:
        c2w: ``[4, 4]`` camera-to-world transform (OpenGL convention, see module docstring).
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (``W / 2, H / 2`` for a centred camera).
        height, width: image size in pixels.
    """

    c2w: Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int

    def __post_init__(self) -> None:
        c2w = torch.as_tensor(self.c2w)
        if c2w.shape != (4, 4):
            raise ValueError(f"Camera: c2w must have shape [4, 4], got {list(c2w.shape)}")
        if not c2w.is_floating_point():
            c2w = c2w.to(torch.float32)
        if not bool(torch.isfinite(c2w).all()):
            raise ValueError("Camera: c2w must be finite")
        self.c2w = c2w
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"Camera: {name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        for name in ("fx", "fy"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"Camera: {name} must be a positive focal length in pixels, got {value!r}"
                )
            setattr(self, name, value)
        for name in ("cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"Camera: {name} must be finite, got {value!r}")
            setattr(self, name, value)

    @classmethod
    def from_fov(cls, c2w: Tensor, height: int, width: int, fov_deg: float) -> Camera:
        """Centred camera with square pixels and a given **vertical** field of view.

        Args:
            c2w: ``[4, 4]`` camera-to-world transform.
            height, width: image size in pixels.
            fov_deg: full vertical field of view in degrees, in (0, 180). For square images it is
                also the horizontal one.
        """
        fov_deg = float(fov_deg)
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f"Camera.from_fov: fov_deg must be in (0, 180) degrees, got {fov_deg}")
        if isinstance(height, bool) or int(height) != height or height < 1:
            raise ValueError(f"Camera.from_fov: height must be a positive integer, got {height!r}")
        focal = 0.5 * float(height) / math.tan(0.5 * math.radians(fov_deg))
        return cls(
            c2w=c2w,
            fx=focal,
            fy=focal,
            cx=0.5 * float(width),
            cy=0.5 * float(height),
            height=height,
            width=width,
        )

    @property
    def origin(self) -> Tensor:
        """Camera centre in world coordinates, ``[3]``."""
        return self.c2w[:3, 3]

    def to(self, device: torch.device | str) -> Camera:
        """A copy with ``c2w`` on ``device``."""
        return Camera(
            self.c2w.to(device), self.fx, self.fy, self.cx, self.cy, self.height, self.width
        )


def _as_vec3(value: Tensor | Sequence[float], name: str) -> Tensor:
    vec = torch.as_tensor(value)
    if not vec.is_floating_point():
        vec = vec.to(torch.float32)
    if vec.shape != (3,):
        raise ValueError(f"look_at: {name} must have shape [3], got {list(vec.shape)}")
    if not bool(torch.isfinite(vec).all()):
        raise ValueError(f"look_at: {name} must be finite, got {vec.tolist()}")
    return vec


def look_at(
    eye: Tensor | Sequence[float],
    target: Tensor | Sequence[float] = (0.0, 0.0, 0.0),
    up: Tensor | Sequence[float] = (0.0, 0.0, 1.0),
) -> Tensor:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target``.

    Args:
        eye: ``[3]`` camera position (world units).
        target: ``[3]`` point that projects to the image centre.
        up: ``[3]`` approximate world up direction (z is up in this library); the image +y axis is
            its component orthogonal to the viewing direction.

    Returns:
        ``[4, 4]`` c2w in the OpenGL convention (columns: right, up, backward, position), dtype of
        ``eye`` (float32 for Python sequences).

    When the viewing direction is parallel to ``up`` (e.g. a camera straight above the origin) the
    image up vector is undefined; the world axis least aligned with the viewing direction (+y for a
    camera on the z axis) is used instead.
    """
    eye_t = _as_vec3(eye, "eye")
    target_t = _as_vec3(target, "target").to(eye_t)
    up_t = _as_vec3(up, "up").to(eye_t)
    back = eye_t - target_t
    dist = torch.linalg.vector_norm(back)
    if dist <= 0:
        raise ValueError(f"look_at: eye and target must differ, both are {eye_t.tolist()}")
    back = back / dist
    up_norm = torch.linalg.vector_norm(up_t)
    if up_norm <= 0:
        raise ValueError("look_at: up must be a non-zero vector")
    up_t = up_t / up_norm
    right = torch.linalg.cross(up_t, back)
    if torch.linalg.vector_norm(right) < 1e-6:
        # Degenerate: looking along `up`. Use the world axis least aligned with the view direction.
        fallback = torch.zeros(3, dtype=eye_t.dtype, device=eye_t.device)
        fallback[int(torch.argmin(back.abs()))] = 1.0
        right = torch.linalg.cross(fallback, back)
    right = right / torch.linalg.vector_norm(right)
    cam_up = torch.linalg.cross(back, right)
    c2w = torch.eye(4, dtype=eye_t.dtype, device=eye_t.device)
    c2w[:3, 0] = right
    c2w[:3, 1] = cam_up
    c2w[:3, 2] = back
    c2w[:3, 3] = eye_t
    return c2w


def spherical_to_cartesian(radius: float, azimuth_deg: float, elevation_deg: float) -> Tensor:
    """``[3]`` point at ``radius`` from the origin (azimuth from +x to +y, elevation above xy)."""
    az = math.radians(azimuth_deg)
    el = math.radians(elevation_deg)
    return torch.tensor(
        [
            radius * math.cos(el) * math.cos(az),
            radius * math.cos(el) * math.sin(az),
            radius * math.sin(el),
        ],
        dtype=torch.float32,
    )


def bounding_sphere(points: Tensor, pad: float = 0.0) -> tuple[Tensor, float]:
    """A sphere holding ``points [N, 3]``: centre ``[3]`` = centre of their bounding box, radius =
    largest distance from it plus ``pad`` (world units, e.g. half a grid cell's diagonal).

    Not the minimal sphere, but at most ``sqrt(3) / 2`` of the box's diagonal, and exact for a
    box's corners. Raises ValueError for no points.
    """
    pts = torch.as_tensor(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise ValueError(f"bounding_sphere: points must be [N >= 1, 3], got {list(pts.shape)}")
    pts = pts.to(torch.float32)
    centre = 0.5 * (pts.min(0).values + pts.max(0).values)
    radius = float(torch.linalg.vector_norm(pts - centre, dim=1).max()) + float(pad)
    return centre, radius


def framing_distance(
    radius: float, fov_deg: float = EVAL_FOV_DEG, fill: float = EVAL_FILL
) -> float:
    """Distance from a sphere's centre at which a camera of vertical field of view ``fov_deg``
    sees the sphere span ``fill`` of the field of view: ``radius / sin(fill * fov / 2)``.

    With ``fill <= 1`` the whole sphere (hence anything inside it) is in a square frame.
    """
    if not radius > 0:
        raise ValueError(f"framing_distance: radius must be > 0, got {radius!r}")
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"framing_distance: fov_deg must be in (0, 180), got {fov_deg!r}")
    if not 0.0 < fill <= 1.0:
        raise ValueError(f"framing_distance: fill must be in (0, 1], got {fill!r}")
    return float(radius) / math.sin(math.radians(0.5 * fill * fov_deg))


def orbit_cameras(
    n: int,
    radius: float = 2.0,
    elevation_deg: float = 30.0,
    height: int = 128,
    width: int = 128,
    fov_deg: float = 45.0,
    azimuth_offset_deg: float = 0.0,
    center: Tensor | Sequence[float] = (0.0, 0.0, 0.0),
) -> list[Camera]:
    """``n`` cameras looking at ``center``, evenly spaced in azimuth on a circle.

    Camera ``k`` sits at azimuth ``azimuth_offset_deg + 360 * k / n`` degrees (from +x towards +y),
    elevation ``elevation_deg`` and distance ``radius`` (world units) from ``center``; z is up.
    To frame an object of bounding sphere (c, r) use ``center=c, radius=framing_distance(r,
    fov_deg)``.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"orbit_cameras: n must be a positive integer, got {n!r}")
    if not radius > 0:
        raise ValueError(f"orbit_cameras: radius must be positive, got {radius!r}")
    if not -90.0 <= elevation_deg <= 90.0:
        raise ValueError(f"orbit_cameras: elevation_deg must be in [-90, 90], got {elevation_deg}")
    c = _as_vec3(center, "center").to(torch.float32)
    cams = []
    for k in range(int(n)):
        azimuth = azimuth_offset_deg + 360.0 * k / n
        eye = c + spherical_to_cartesian(radius, azimuth, elevation_deg)
        cams.append(Camera.from_fov(look_at(eye, c), height, width, fov_deg))
    return cams


def framing_distance_points(
    points: Tensor,
    center: Tensor,
    direction: Tensor,
    fov_deg: float = EVAL_FOV_DEG,
    fill: float = EVAL_FILL,
    up: Sequence[float] = (0.0, 0.0, 1.0),
) -> float:
    """Smallest distance from ``center`` along the unit ``direction`` (centre -> eye) at which a
    square pinhole camera looking at ``center`` sees every point of ``points [N, 3]`` within
    ``fill`` of its half field of view (``|x|, |y| <= tan(fill * fov / 2)`` in normalised image
    coordinates): tighter than a bounding sphere for flat or thin objects.

    A point at lateral offsets ``(a, b)`` (camera right / up axes) and height ``h`` along
    ``direction`` is in view when ``max(|a|, |b|) <= (d - h) tan``, so ``d = max(h +
    max(|a|, |b|) / tan)``; never closer than the farthest point plus 1 % (eye outside the object).
    """
    c = torch.as_tensor(center, dtype=torch.float32).reshape(3)
    pts = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3) - c
    c2w = look_at(c + direction.to(torch.float32), c, up)
    right, cam_up, back = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2]
    lateral = torch.maximum((pts @ right).abs(), (pts @ cam_up).abs())
    height = pts @ back
    tan = math.tan(math.radians(0.5 * fill * fov_deg))
    reach = float(torch.linalg.vector_norm(pts, dim=1).max())
    return max(float((height + lateral / tan).max()), 1.01 * reach, 1e-6)


def eval_cameras(
    height: int = 128,
    width: int = 128,
    center: Tensor | Sequence[float] | None = None,
    radius: float | None = None,
    fov_deg: float = EVAL_FOV_DEG,
    fill: float = EVAL_FILL,
    points: Tensor | None = None,
) -> list[Camera]:
    """The 4 fixed held-out views used across the library to measure PSNR, framing an object.

    Views are :data:`EVAL_VIEWS` (azimuth, elevation in degrees): (45, 20), (135, -15), (225, 20),
    (315, -15) around ``center``, all looking at it with z up, with vertical field of view
    ``fov_deg``. The distance of each camera from ``center``:

    * with ``points [N, 3]`` (e.g. the object's occupied grid cells, as
      :func:`graphnerf.fit.evaluate` passes), per view the closest at which every point is within
      ``fill`` of the frame (:func:`framing_distance_points`); ``center`` defaults to the centre
      of their bounding box. The object then fills most of each frame.
    * else :func:`framing_distance` ``(radius, fov_deg, fill)``: the sphere ``(center, radius)``
      spans ``fill`` of the field of view. The default is the sphere bounding the default AABB
      [-0.7, 0.7]^3 (centre 0, radius 1.21, distance 3.0), in which the whole box is in view.

    Deterministic: no randomness involved.
    """
    if points is not None and center is None:
        center = bounding_sphere(points)[0]
    c = (
        torch.zeros(3)
        if center is None
        else _as_vec3(center, "center").detach().to(torch.float32).cpu()
    )
    r = _DEFAULT_BOX_RADIUS if radius is None else float(radius)
    cams = []
    for az, el in EVAL_VIEWS:
        direction = spherical_to_cartesian(1.0, az, el)
        if points is not None:
            dist = framing_distance_points(points.detach().cpu(), c, direction, fov_deg, fill)
        else:
            dist = framing_distance(r, fov_deg, fill)
        cams.append(Camera.from_fov(look_at(c + dist * direction, c), height, width, fov_deg))
    return cams
