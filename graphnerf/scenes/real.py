"""Real meshes that ship inside PyPI packages, by name: ``real_mesh("duck")``.

Nothing is downloaded at run time. The meshes come from ``pybullet``'s ``pybullet_data`` folder
(``pip install "graphnerf[meshes]"``), where they sit as plain OBJ files (with MTL and texture
where they have one):

=============  ===========================  ====  ========================================
name           file (in ``pybullet_data``)  up    what it is
=============  ===========================  ====  ========================================
``bunny``      ``bunny.obj``                y     the Stanford bunny, 902 faces, watertight
``duck``       ``duck.obj``                 y     a textured rubber duck
``mug``        ``objects/mug.obj``          z     a mug with a handle (cavity filled)
``lego``       ``lego/lego.obj``            y     a 2x2 Lego brick with studs
``soccerball`` ``soccerball.obj``           z     a textured football (black/white panels)
=============  ===========================  ====  ========================================

``up`` is the axis the object stands on in its file, checked by eye on renders
(``graphnerf scenes --meshes``); :class:`MeshScene` turns y-up files to z-up. ``mug`` and
``soccerball`` break the OBJ convention (y-up, :func:`~graphnerf.scenes.mesh.default_up`), so the
registry states every mesh's axis rather than trusting the suffix. Meshes without colours get :class:`MeshScene`'s height palette; the non-watertight ones
(duck, mug, lego, soccerball) are filled by its voxel fallback, with a warning silenced here
because it is expected; that fill closes the mug's open cavity.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .mesh import MeshScene

__all__ = ["REAL_MESHES", "RealMesh", "available_real_meshes", "real_mesh", "real_mesh_path"]


@dataclass(frozen=True)
class RealMesh:
    """Where a packaged mesh lives: ``package`` (an importable top-level package), the file
    relative to it, and the axis (``"y"`` or ``"z"``) its object stands on."""

    package: str
    file: str
    up: str
    install: str  # the pip requirement that brings ``package``


_PYBULLET = "graphnerf[meshes]  (pybullet)"

REAL_MESHES: dict[str, RealMesh] = {
    "bunny": RealMesh("pybullet_data", "bunny.obj", "y", _PYBULLET),
    "duck": RealMesh("pybullet_data", "duck.obj", "y", _PYBULLET),
    "mug": RealMesh("pybullet_data", "objects/mug.obj", "z", _PYBULLET),
    "lego": RealMesh("pybullet_data", "lego/lego.obj", "y", _PYBULLET),
    "soccerball": RealMesh("pybullet_data", "soccerball.obj", "z", _PYBULLET),
}


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``None``: absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def real_mesh_path(name: str) -> Path:
    """The file of the packaged mesh ``name`` (a key of :data:`REAL_MESHES`).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        FileNotFoundError: the package that ships it is not installed, or lacks the file; the
            message says what to ``pip install``.
    """
    if name not in REAL_MESHES:
        raise KeyError(f"unknown real mesh {name!r}; known: {', '.join(REAL_MESHES)}")
    entry = REAL_MESHES[name]
    root = _package_dir(entry.package)
    if root is None:
        raise FileNotFoundError(
            f"real mesh {name!r} ships in the {entry.package!r} package, which is not installed: "
            f'pip install "{entry.install.split()[0]}"'
        )
    path = root / entry.file
    if not path.is_file():
        raise FileNotFoundError(f"real mesh {name!r}: {path} is missing from {entry.package!r}")
    return path


def available_real_meshes() -> list[str]:
    """Names of :data:`REAL_MESHES` whose files are installed here, in registry order."""
    out = []
    for name in REAL_MESHES:
        try:
            real_mesh_path(name)
        except FileNotFoundError:
            continue
        out.append(name)
    return out


def real_mesh(name: str, **kwargs: Any) -> MeshScene:
    """The packaged mesh ``name`` as a :class:`MeshScene` (class name ``"mesh"``).

    ``kwargs`` go to :class:`MeshScene` (``up`` defaults to the registry's). The voxel-fill
    warning of non-watertight meshes is silenced: for these meshes it is known and expected.
    """
    path = real_mesh_path(name)
    kwargs.setdefault("up", REAL_MESHES[name].up)
    kwargs.setdefault("name", name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not watertight.*")
        return MeshScene(path, **kwargs)
