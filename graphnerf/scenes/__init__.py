"""Ground-truth scenes for the NeRF zoo: procedural shape classes, meshes, rotations.

A :class:`Scene` maps world points ``x [N, 3]`` in the AABB [-0.7, 0.7]^3 to
``(sigma [N], rgb [N, 3])`` like a radiance field, so it renders with :mod:`graphnerf.render`
and distils into a field with :mod:`graphnerf.fit`.

Example::

    scene = make_scene("chair", seed=3)                   # one of the 13 CLASSES
    turned = scene.rotated(random_rotation(seed=7))       # the same chair, turned about the centre
    sigma, rgb = turned(torch.rand(1024, 3) * 1.4 - 0.7)
    mesh = MeshScene("bunny.ply", up="y")                 # OBJ, PLY, STL, OFF, GLB, ...
    duck = real_mesh("duck")                              # packaged meshes: REAL_MESHES

Objects are scaled so their bounding sphere fits in the AABB: every rotation stays inside.
"""

from .base import DEFAULT_AABB, DEFAULT_DENSITY, RotatedScene, Scene
from .mesh import MeshScene, default_up, packaged_meshes
from .procedural import CLASSES, ProceduralScene, make_scene
from .real import REAL_MESHES, RealMesh, available_real_meshes, real_mesh, real_mesh_path
from .rotations import (
    axis_angle,
    describe_rotation,
    identity_quat,
    matrix_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_to_matrix,
    random_rotation,
)
from .sheet import make_contact_sheet, make_mesh_sheet, render_sheet

__all__ = [
    "CLASSES",
    "DEFAULT_AABB",
    "DEFAULT_DENSITY",
    "MeshScene",
    "default_up",
    "ProceduralScene",
    "REAL_MESHES",
    "RealMesh",
    "RotatedScene",
    "Scene",
    "available_real_meshes",
    "axis_angle",
    "describe_rotation",
    "identity_quat",
    "make_contact_sheet",
    "make_mesh_sheet",
    "make_scene",
    "matrix_to_quat",
    "packaged_meshes",
    "quat_conjugate",
    "quat_multiply",
    "quat_to_matrix",
    "random_rotation",
    "real_mesh",
    "real_mesh_path",
    "render_sheet",
]
