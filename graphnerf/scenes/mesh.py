"""`MeshScene`: a triangle mesh (anything trimesh reads) as a ground-truth scene.

Placement: the mesh is centred (bounding-box centre at the AABB centre) and scaled so that its
bounding sphere about that centre has radius ``radius`` (default 0.6 < 0.7), so any rotation of
it stays inside the AABB. graphnerf's world is z-up; ``up="y"`` turns a y-up mesh to z-up first.

Up axis: the formats that have a convention decide it when ``up`` is not given (:func:`default_up`):
glTF / GLB are y-up by their specification and OBJ files are y-up by convention (Wavefront,
Blender's and most DCC exporters' default), so both default to ``"y"``; STL (3D printing), PLY and
OFF have no common rule and default to ``"z"``. A file that breaks its format's convention needs
``up`` (``graphnerf fit-mesh --up``); ``MeshScene.up`` records the axis used and
``MeshScene.up_source`` where it came from (``"given"``, ``"format"`` or ``"object"``).

Occupancy:

- watertight meshes: exact containment by ray tests (``trimesh`` ``mesh.contains``; fast with
  ``embreex``, see ``trimesh.ray.has_embree``, a pure-python fallback otherwise);
- other meshes: a warning naming the file, then a voxel fill at ``voxel_resolution`` cells across
  the AABB. trimesh's voxel grids need scipy (not a dependency), so the voxelisation (vertices
  of the mesh subdivided finer than the voxel pitch) and the fill are ours: along each
  of the 6 axis directions a voxel counts the surface crossings (runs of surface voxels) between
  itself and the grid's edge; it votes "inside" when the count is odd, and is filled with at
  least 4 of 6 votes (or when it is a surface voxel). A missing face costs at most the votes of
  the directions through the hole; the price is that open cavities (a cup) may be filled.

Colour: vertex colours, face colours or texture colours when the mesh has them, splatted from
surface samples into a ``color_resolution``^3 grid over the AABB, spread into empty cells from
ever coarser averages (so inside points get the colour of the nearby surface), and read back
trilinearly. Meshes without colours get a fixed palette by height (z).
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DEFAULT_AABB, DEFAULT_DENSITY, Scene

__all__ = ["MESH_SUFFIXES", "UP_BY_SUFFIX", "MeshScene", "default_up", "packaged_meshes"]

MESH_SUFFIXES: tuple[str, ...] = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")

# the up axis each format's convention gives its files (see the module docstring)
UP_BY_SUFFIX: dict[str, str] = {
    ".obj": "y",
    ".gltf": "y",
    ".glb": "y",
    ".stl": "z",
    ".ply": "z",
    ".off": "z",
}


def default_up(path: str | os.PathLike) -> str:
    """The up axis (``"y"`` or ``"z"``) the format of ``path`` implies: y for OBJ and glTF/GLB,
    z otherwise (STL, PLY, OFF and unknown suffixes)."""
    return UP_BY_SUFFIX.get(Path(path).suffix.lower(), "z")


# colours of the height palette, bottom to top
HEIGHT_PALETTE = np.array(
    [[0.23, 0.30, 0.55], [0.30, 0.62, 0.60], [0.85, 0.78, 0.38], [0.80, 0.35, 0.25]]
)


def _load(source: str | os.PathLike, name: str):
    import trimesh

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mesh file")
    try:
        loaded = trimesh.load(str(path), force="mesh")
    except Exception as e:  # trimesh raises many types for unreadable input
        raise ValueError(f"{path}: could not read a mesh ({type(e).__name__}: {e})") from e
    return loaded


def _as_trimesh(loaded, name: str):
    import trimesh

    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(geoms) if geoms else None
    if isinstance(loaded, list):
        geoms = [g for g in loaded if isinstance(g, trimesh.Trimesh)]
        loaded = trimesh.util.concatenate(geoms) if geoms else None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"{name}: no triangles found (empty mesh or not a surface mesh)")
    if not np.all(np.isfinite(loaded.vertices)):
        raise ValueError(f"{name}: mesh has non-finite vertex coordinates")
    extent = np.ptp(np.asarray(loaded.vertices)[loaded.faces.reshape(-1)], axis=0).max()
    if not extent > 0:
        raise ValueError(f"{name}: mesh is degenerate (all vertices at one point)")
    return loaded


def _surface_colors(mesh, n_samples: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Surface points and their RGB in [0, 1], or None when the mesh carries no colours."""
    import trimesh

    kind = getattr(mesh.visual, "kind", None)
    if kind == "texture":
        try:
            pts, _, col = trimesh.sample.sample_surface(mesh, n_samples, sample_color=True, seed=0)
            return np.asarray(pts), np.asarray(col, dtype=float)[:, :3] / 255.0
        except Exception:  # no image / no uv: try per-vertex colours
            try:
                visual = mesh.visual.to_color()
                kind = "vertex"
                vcol = np.asarray(visual.vertex_colors, dtype=float)[:, :3] / 255.0
            except Exception:
                return None
    elif kind == "vertex":
        vcol = np.asarray(mesh.visual.vertex_colors, dtype=float)[:, :3] / 255.0
    elif kind == "face":
        fcol = np.asarray(mesh.visual.face_colors, dtype=float)[:, :3] / 255.0
        pts, face = trimesh.sample.sample_surface(mesh, n_samples, seed=0)
        return np.asarray(pts), fcol[face]
    else:
        return None
    pts, face, bary = trimesh.sample.sample_surface(
        mesh, n_samples, return_barycentric=True, seed=0
    )
    col = np.einsum("nk,nkc->nc", bary, vcol[mesh.faces[face]])
    # the vertices themselves too, so small features keep their exact colours
    return np.concatenate([pts, mesh.vertices]), np.concatenate([col, vcol])


def _pyramid_fill(total: Tensor, count: Tensor) -> Tensor:
    """Colours ``total / count`` (``[3, R, R, R]``, ``[R, R, R]``) with empty cells filled.

    Empty cells take the weighted mean colour of the smallest coarser block (factor 2 per level)
    that holds samples: an approximate nearest-surface colour in ``O(R^3)``.
    """
    filled = count > 0
    if filled.all() or min(count.shape) <= 1:
        return total / count.clamp(min=1e-12)
    # pooling averages total and count over the same cells, so their ratio is exact
    coarse_total = F.avg_pool3d(total[None], 2, ceil_mode=True)[0]
    coarse_count = F.avg_pool3d(count[None, None], 2, ceil_mode=True)[0, 0]
    coarse = _pyramid_fill(coarse_total, coarse_count)
    up = F.interpolate(coarse[None], size=tuple(count.shape), mode="nearest")[0]
    return torch.where(filled, total / count.clamp(min=1e-12), up)


def _surface_voxels(mesh, origin: np.ndarray, pitch: float, shape: tuple[int, ...]) -> np.ndarray:
    """Voxels touched by the surface: vertices of the mesh subdivided to edges < pitch / 2."""
    import trimesh

    v, _ = trimesh.remesh.subdivide_to_size(
        mesh.vertices, mesh.faces, max_edge=pitch / 2, max_iter=30
    )
    idx = np.round((np.asarray(v) - origin) / pitch).astype(np.int64)
    idx = idx[np.all((idx >= 0) & (idx < np.array(shape)), axis=1)]
    grid = np.zeros(shape, dtype=bool)
    grid[tuple(idx.T)] = True
    return grid


def _parity_fill(surface: np.ndarray, min_votes: int = 4) -> np.ndarray:
    """Fill a surface voxelisation by majority vote of 6 axis-direction parity tests."""
    votes = np.zeros(surface.shape, dtype=np.int8)
    for axis in range(3):
        s = np.moveaxis(surface, axis, 0)
        prev = np.zeros_like(s)
        prev[1:] = s[:-1]
        starts = s & ~prev  # first voxel of each run of surface voxels, scanning up
        below = np.cumsum(starts, axis=0) - starts  # runs entirely before this voxel
        nxt = np.zeros_like(s)
        nxt[:-1] = s[1:]
        ends = s & ~nxt  # last voxel of each run, scanning up = first scanning down
        above = np.cumsum(ends[::-1], axis=0)[::-1] - ends
        v = (below % 2 == 1).astype(np.int8) + (above % 2 == 1).astype(np.int8)
        votes += np.moveaxis(v, 0, axis)
    return surface | (votes >= min_votes)


class MeshScene(Scene):
    """A mesh file (OBJ, PLY, STL, OFF, GLB/glTF, ...) or a ``trimesh`` object as a scene.

    Args:
        mesh: a path, or a ``trimesh.Trimesh`` / ``trimesh.Scene`` (copied, never modified).
        name: defaults to the file stem (``"mesh"`` for objects).
        class_name: the category label, ``"mesh"`` by default.
        radius: bounding-sphere radius after placement (world units, must be < AABB half-size).
        up: the axis the object stands on in the file: ``"z"`` (as is) or ``"y"`` (rotate +y to
            +z). ``None``: :func:`default_up` of the file's format (y for OBJ and glTF/GLB, z for
            STL, PLY, OFF); ``"z"`` for a ``trimesh`` object.
        voxel_resolution: cells across the AABB for the non-watertight fallback.
        color_resolution: cells across the AABB of the colour grid.
        grid_resolution: watertight meshes only: if given, precompute the ray-test occupancy at
            the centres of a grid with this many cells across the AABB and answer queries by
            lookup (much faster per query, exact only up to the cell size). ``None``: exact
            ray tests per query.
        aabb, density, seed: see :class:`~graphnerf.scenes.base.Scene`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file cannot be read as a mesh, or has no triangles (message names it).
    """

    def __init__(
        self,
        mesh,
        name: str | None = None,
        class_name: str = "mesh",
        radius: float = 0.6,
        up: str | None = None,
        voxel_resolution: int = 128,
        color_resolution: int = 64,
        grid_resolution: int | None = None,
        aabb: Sequence[float] = DEFAULT_AABB,
        density: float = DEFAULT_DENSITY,
        seed: int | None = None,
    ) -> None:
        import trimesh

        if isinstance(mesh, str | os.PathLike):
            self.path: Path | None = Path(mesh)
            label = str(self.path)
            raw = _load(mesh, label)
            name = self.path.stem if name is None else name
        else:
            self.path = None
            name = "mesh" if name is None else name
            label = name
            raw = mesh.copy() if hasattr(mesh, "copy") else mesh
        super().__init__(name, class_name, seed, aabb, density)
        tm = _as_trimesh(raw, label)
        half = min(b - a for a, b in zip(self.aabb[:3], self.aabb[3:], strict=True)) / 2
        if not 0 < radius <= half:
            raise ValueError(f"radius must be in (0, {half}] to fit the AABB, got {radius}")
        if up is None:
            up, self.up_source = (default_up(self.path), "format") if self.path else ("z", "object")
        else:
            self.up_source = "given"
        if up not in ("z", "y"):
            raise ValueError(f"up must be 'z' or 'y', got {up!r}")
        self.up = up

        # placement: (optional y-up -> z-up), centre the bounding box, scale the bounding sphere
        T = np.eye(4)
        if up == "y":
            T[:3, :3] = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
        v = tm.vertices @ T[:3, :3].T
        used = v[np.unique(tm.faces)]
        mid = (used.min(axis=0) + used.max(axis=0)) / 2
        scale = radius / float(np.linalg.norm(used - mid, axis=1).max())
        S = np.eye(4)
        S[:3, :3] *= scale
        S[:3, 3] = np.asarray(self.center, dtype=float) - scale * mid
        tm.apply_transform(S @ T)
        self.mesh = tm
        self.placement = S @ T  # original coordinates -> world
        self.watertight = bool(tm.is_watertight)
        self.has_embree = bool(trimesh.ray.has_embree)

        self._voxels: np.ndarray | None = None
        if not self.watertight:
            warnings.warn(
                f"{label}: mesh is not watertight; occupancy falls back to a voxel fill "
                f"({voxel_resolution}^3 over the AABB), which may be approximate",
                stacklevel=2,
            )
            self._build_voxels(int(voxel_resolution))
        elif grid_resolution is not None:
            self._build_voxels(int(grid_resolution), exact=True)
        self._build_colors(int(color_resolution))

    # ------------------------------------------------------------------ occupancy

    def _build_voxels(self, resolution: int, exact: bool = False) -> None:
        """Occupancy at voxel centres: ray tests (``exact``) or the parity-vote fill."""
        if resolution < 2:
            raise ValueError(f"voxel/grid resolution must be >= 2, got {resolution}")
        lo, hi = np.asarray(self.aabb[:3]), np.asarray(self.aabb[3:])
        pitch = float(min(hi - lo)) / resolution
        # one empty voxel of padding beyond the AABB on each side: every ray leaves through it
        origin = lo + pitch / 2 - pitch
        shape = tuple(int(n) for n in np.ceil((hi - lo) / pitch).astype(int) + 2)
        if exact:
            axes = [origin[i] + pitch * np.arange(shape[i]) for i in range(3)]
            centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
            self._voxels = np.asarray(self.mesh.contains(centres), dtype=bool).reshape(shape)
        else:
            self._voxels = _parity_fill(_surface_voxels(self.mesh, origin, pitch, shape))
        self._voxel_origin = origin  # centre of voxel (0, 0, 0)
        self._voxel_pitch = pitch

    def _occupied(self, x: Tensor) -> Tensor:
        pts = x.detach().cpu().double().numpy()
        if self._voxels is None:
            inside = np.asarray(self.mesh.contains(pts), dtype=bool)
        else:
            idx = np.round((pts - self._voxel_origin) / self._voxel_pitch).astype(np.int64)
            ok = np.all((idx >= 0) & (idx < np.array(self._voxels.shape)), axis=1)
            inside = np.zeros(len(pts), dtype=bool)
            inside[ok] = self._voxels[tuple(idx[ok].T)]
        return torch.from_numpy(inside).to(x.device)

    # ------------------------------------------------------------------ colour

    def _build_colors(self, resolution: int) -> None:
        samples = _surface_colors(self.mesh, n_samples=max(20000, 8 * len(self.mesh.faces)))
        self.has_colors = samples is not None
        self._color_grid: Tensor | None = None
        if samples is None:
            zs = self.mesh.vertices[:, 2]
            self._z_range = (float(zs.min()), float(zs.max()))
            return
        pts, col = samples
        lo, hi = np.asarray(self.aabb[:3]), np.asarray(self.aabb[3:])
        R = resolution
        idx = np.clip(np.round((pts - lo) / (hi - lo) * (R - 1)), 0, R - 1).astype(np.int64)
        flat = torch.from_numpy(idx[:, 0] * R * R + idx[:, 1] * R + idx[:, 2])
        total = torch.zeros(3, R**3, dtype=torch.float32)
        total.index_add_(1, flat, torch.from_numpy(col.T.astype(np.float32)).contiguous())
        count = torch.zeros(R**3, dtype=torch.float32).index_add_(0, flat, torch.ones(len(flat)))
        self._color_grid = _pyramid_fill(total.view(3, R, R, R), count.view(R, R, R))

    def _colors(self, x: Tensor) -> Tensor:
        if self._color_grid is None:
            z0, z1 = self._z_range
            t = ((x[:, 2] - z0) / max(z1 - z0, 1e-9)).clamp(0, 1) * (len(HEIGHT_PALETTE) - 1)
            k = t.floor().long().clamp(max=len(HEIGHT_PALETTE) - 2)
            pal = torch.as_tensor(HEIGHT_PALETTE, dtype=x.dtype, device=x.device)
            f = (t - k)[:, None]
            return pal[k] * (1 - f) + pal[k + 1] * f
        lo, hi = x.new_tensor(self.aabb[:3]), x.new_tensor(self.aabb[3:])
        g = (x - lo) / (hi - lo) * 2 - 1  # [-1, 1] with align_corners=True
        # grid_sample wants (W, H, D) = (z, y, x) order for a [C, X, Y, Z] volume
        grid = g.flip(-1).view(1, -1, 1, 1, 3)
        vol = self._color_grid.to(device=x.device, dtype=x.dtype)[None]
        out = F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(3, -1).T.clamp(0, 1)

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        return self._occupied(x), self._colors(x), None

    def __repr__(self) -> str:
        src = str(self.path) if self.path is not None else "<trimesh>"
        return (
            f"MeshScene({src!r}, faces={len(self.mesh.faces)}, watertight={self.watertight}, "
            f"colors={self.has_colors}, up={self.up!r})"
        )


def packaged_meshes() -> list[Path]:
    """Mesh files (:data:`MESH_SUFFIXES`) that ship inside the installed Python distributions.

    Reads each installed distribution's file list (its RECORD); imports nothing, downloads
    nothing, and returns only files that exist, sorted. Often empty: few wheels ship meshes.
    """
    found: set[Path] = set()
    for dist in importlib.metadata.distributions():
        try:
            files = dist.files or []
        except Exception:  # a broken metadata directory must not break the listing
            continue
        for f in files:
            if f.suffix.lower() in MESH_SUFFIXES:
                p = Path(str(dist.locate_file(f))).resolve()
                if p.is_file():
                    found.add(p)
    return sorted(found)
