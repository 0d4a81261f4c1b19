"""Scenes: SDF toolkit, the 13 procedural classes, rotations, mesh scenes, contact sheet."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch

from graphnerf.scenes import (
    CLASSES,
    REAL_MESHES,
    MeshScene,
    Scene,
    axis_angle,
    default_up,
    describe_rotation,
    identity_quat,
    make_contact_sheet,
    make_scene,
    matrix_to_quat,
    packaged_meshes,
    quat_multiply,
    quat_to_matrix,
    random_rotation,
    real_mesh,
    real_mesh_path,
)
from graphnerf.scenes import real as real_module
from graphnerf.scenes import sdf as S
from graphnerf.scenes.mesh import MESH_SUFFIXES
from graphnerf.scenes.procedural import MAX_RADIUS, SIZE_RANGE
from graphnerf.scenes.rotations import canonical_quat, quat_conjugate

trimesh = pytest.importorskip("trimesh")

GRID = 48  # cells per axis of the occupancy grid over the AABB
SEEDS = (0, 1, 2, 3)
CELL = 1.4 / GRID


def _grid(n: int = GRID) -> torch.Tensor:
    g = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 1.4 - 0.7
    return torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).reshape(-1, 3)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Many mid-sized tensor ops: one thread is as fast, and much faster on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def grid() -> torch.Tensor:
    return _grid()


@pytest.fixture(scope="module")
def occupancy(grid) -> dict[tuple[str, int], torch.Tensor]:
    """Occupancy of every class x seed on the grid (computed once, ~110k points each)."""
    return {(c, s): make_scene(c, s).occupancy(grid) for c in CLASSES for s in SEEDS}


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


# ------------------------------------------------------------------------------- SDF toolkit


def _lipschitz_ok(f, x: torch.Tensor) -> bool:
    """A signed distance (or a bound of one) never changes faster than the distance moved."""
    y = x + 0.05 * torch.randn_like(x)
    return bool(((f(x) - f(y)).abs() <= (x - y).norm(dim=-1) + 1e-9).all())


PRIMITIVES = {
    "box": lambda: S.Box((0.3, 0.2, 0.1), center=(0.1, 0, 0), rotation=S.rot_z(30)),
    "rounded_box": lambda: S.RoundedBox((0.3, 0.2, 0.1), 0.05, rotation=S.rot_x(20)),
    "cylinder": lambda: S.Cylinder(0.2, 0.3, axis=(1.0, 1.0, 0.0)),
    "capsule": lambda: S.Capsule.between((-0.2, 0, 0), (0.2, 0.1, 0.3), 0.1),
    "cone": lambda: S.Cone(0.3, 0.05, 0.25, center=(0, 0.1, 0), axis="y"),
    "torus": lambda: S.Torus(0.3, 0.08, axis="x"),
    "ellipsoid": lambda: S.Ellipsoid((0.4, 0.2, 0.1), rotation=S.rot_y(45)),
    "sphere": lambda: S.Sphere(0.25, center=(0.1, 0.1, 0.1)),
}


@pytest.mark.parametrize("kind", sorted(PRIMITIVES))
def test_primitive_is_distance_like_and_bounded(kind):
    """1-Lipschitz (exact distances), and inside points lie in the conservative bounds."""
    prim = PRIMITIVES[kind]()
    x = (torch.rand(20000, 3, generator=torch.Generator().manual_seed(0)) - 0.5).double()
    if kind == "ellipsoid":  # approximate distance: check the sign against the implicit form
        local = x @ torch.from_numpy(prim.rotation)
        implicit = (local / torch.from_numpy(prim.radii)).norm(dim=-1) - 1
        assert torch.equal(prim(x) < 0, implicit < 0)
    else:
        assert _lipschitz_ok(prim, x)
    inside = x[prim(x) < 0]
    assert len(inside) > 50, "test points should hit the shape"
    lo, hi = prim.bounds
    assert (inside >= torch.from_numpy(lo) - 1e-9).all() and (
        inside <= torch.from_numpy(hi) + 1e-9
    ).all()


def test_primitive_exact_values():
    """Closed-form distances at hand-picked points."""
    p = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0]]).double()
    box = S.Box((1.0, 1.0, 1.0))
    assert torch.allclose(box(p), torch.tensor([1.0, -1.0, math.sqrt(2), 2.0]).double())
    cyl = S.Cylinder(1.0, 1.0, axis="x")  # along x: radius 1 in yz, |x| <= 1
    assert torch.allclose(cyl(p), torch.tensor([1.0, -1.0, 1.0 * math.sqrt(2), 2.0]).double())
    cone = S.Cone(1.0, 1.0, 1.0)  # equal radii: the cylinder along z
    assert torch.allclose(cone(p), S.Cylinder(1.0, 1.0)(p))
    tip = S.Cone(1.0, 0.0, 1.0)  # pointed cone, apex at z = 1
    assert torch.allclose(
        tip(torch.tensor([[0.0, 0.0, 2.0]]).double()), torch.tensor([1.0]).double()
    )
    torus = S.Torus(2.0, 0.5)
    assert torch.allclose(torus(p[2:3]), torch.tensor([2 * math.sqrt(2) - 2.5]).double())
    cap = S.Capsule.between((0, 0, -1), (0, 0, 1), 0.5)
    assert torch.allclose(cap(p), torch.tensor([1.5, -0.5, 2 * math.sqrt(2) - 0.5, 1.5]).double())


def test_part_union_keeps_part_and_paints_later_parts_over_earlier():
    body = S.Box((1.0, 1.0, 1.0))
    decal = S.Box((0.5, 0.5, 0.2), center=(0.0, 0.0, 0.9))  # embedded in the body's top
    far = S.Sphere(0.2, center=(3.0, 0.0, 0.0))
    u = S.PartUnion([body, decal, far], [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
    x = torch.tensor([[0.0, 0, 0], [0.0, 0, 0.8], [0.0, 0, 1.05], [2.5, 0, 0], [3.0, 0, 0.1]])
    d, part = u.evaluate(x)
    assert part.tolist() == [0, 1, 1, 2, 2]
    assert torch.allclose(d, torch.stack([body(x), decal(x), far(x)]).min(0).values)
    assert torch.equal(u.color(part), torch.tensor(u.colors, dtype=torch.float32)[part])


# ------------------------------------------------------------------------------- procedural


def test_every_class_is_nonempty_and_inside_the_bounding_sphere(grid, occupancy):
    """Occupied fraction of the AABB in [0.1%, 60%]; nothing beyond the bounding-sphere cap."""
    r = grid.norm(dim=-1)
    for (c, s), occ in occupancy.items():
        frac = occ.float().mean().item()
        assert 0.001 <= frac <= 0.6, f"{c} seed {s}: occupied fraction {frac:.4%}"
        assert r[occ].max() <= MAX_RADIUS + 1e-6, f"{c} seed {s} leaves its bounding sphere"


def test_seeds_give_different_objects(occupancy):
    for c in CLASSES:
        for i, a in enumerate(SEEDS):
            for b in SEEDS[i + 1 :]:
                iou = _iou(occupancy[(c, a)], occupancy[(c, b)])
                assert iou < 0.9, f"{c}: seeds {a} and {b} nearly identical (IoU {iou:.3f})"


def test_classes_differ_from_each_other(occupancy):
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            assert _iou(occupancy[(a, 0)], occupancy[(b, 0)]) < 0.9, (a, b)


@pytest.mark.parametrize("class_name", CLASSES)
def test_same_seed_is_deterministic(class_name):
    x = torch.rand(4096, 3, generator=torch.Generator().manual_seed(1)) * 1.4 - 0.7
    s1, c1 = make_scene(class_name, 5).query(x)
    s2, c2 = make_scene(class_name, 5).query(x)
    assert torch.equal(s1, s2) and torch.equal(c1, c2)
    assert make_scene(class_name, 5).name == f"{class_name}_0005"


def test_size_alone_does_not_separate_classes(grid, occupancy):
    """Over seeds 0-3 per class, with sizes measured on the occupancy grid:

    (a) largest side of the occupied bounding box: the 13 per-class [min, max] intervals share a
        common value, so no size threshold tells any class from any other;
    (b) occupied volume: the union of the 13 per-class [min, max] intervals is one connected
        interval, so no volume threshold splits the classes into two groups cleanly.
    """
    side, vol = {}, {}
    for c in CLASSES:
        sides, vols = [], []
        for s in SEEDS:
            pts = grid[occupancy[(c, s)]]
            sides.append(float((pts.max(0).values - pts.min(0).values).max()) + CELL)
            vols.append(float(occupancy[(c, s)].float().mean()))
        side[c], vol[c] = (min(sides), max(sides)), (min(vols), max(vols))
    lo, hi = max(v[0] for v in side.values()), min(v[1] for v in side.values())
    assert lo < hi, f"largest-side intervals do not overlap: {side}"
    assert SIZE_RANGE[0] - 2 * CELL <= lo and hi <= SIZE_RANGE[1] + 2 * CELL
    reach = -1.0
    for a, b in sorted(vol.values()):
        assert reach < 0 or a <= reach, f"volume gap between {reach:.4f} and {a:.4f}: {vol}"
        reach = max(reach, b)


def test_query_contract():
    scene = make_scene("table", 2)
    assert isinstance(scene, Scene) and scene.class_name == "table" and scene.seed == 2
    x = torch.rand(5000, 3, generator=torch.Generator().manual_seed(2)) * 2.0 - 1.0
    sigma, rgb = scene(x)
    assert sigma.shape == (5000,) and rgb.shape == (5000, 3) and sigma.dtype == torch.float32
    occ = scene.occupancy(x)
    assert occ.any() and torch.equal(sigma, occ.float() * scene.density)
    outside = ~scene.in_aabb(x)
    assert outside.any() and (sigma[outside] == 0).all() and (rgb[outside] == 0).all()
    assert (rgb >= 0).all() and (rgb <= 1).all()
    assert torch.equal(scene(x.view(50, 100, 3))[0], sigma.view(50, 100))
    # occupied points carry the colour of one of the parts
    colours = torch.tensor(scene.parts.colors, dtype=torch.float32)
    assert ((rgb[occ][:, None] - colours[None]).abs().sum(-1).min(1).values < 1e-6).all()


def test_soft_edge_follows_the_sdf():
    hard, soft = make_scene("sofa", 1), make_scene("sofa", 1, edge=0.004, density=50.0)
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(3)) * 1.4 - 0.7
    d = soft.sdf(x)
    sigma = soft.query(x)[0]
    assert torch.allclose(sigma, 50.0 * torch.sigmoid(-d / 0.004))
    assert torch.equal(soft.occupancy(x), hard.occupancy(x)) and torch.equal(
        hard.occupancy(x), d < 0
    )
    deep, far = d < -0.04, d > 0.04  # ten edge widths away: the step's plateaus
    assert deep.any() and torch.allclose(sigma[deep], torch.tensor(50.0), atol=0.01)
    assert far.any() and (sigma[far] < 0.01).all()
    assert ((sigma > 1) & (sigma < 49)).any(), "some samples fall in the soft edge"


def test_make_scene_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown class"):
        make_scene("spaceship", 0)
    with pytest.raises(ValueError, match="seed"):
        make_scene("chair", -1)


# ------------------------------------------------------------------------------- rotations


def _ball_points(n: int, seed: int, radius: float = 0.69) -> torch.Tensor:
    """float64 points in the ball that every rotation keeps inside the AABB."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    r = radius * torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1 / 3)
    return d / d.norm(dim=-1, keepdim=True) * r


@pytest.mark.parametrize("class_name,seed", [("chair", 0), ("airplane", 1), ("lamp", 2)])
def test_rotated_scene_is_the_base_turned(class_name, seed):
    scene = make_scene(class_name, seed)
    x = torch.cat([_ball_points(4000, seed), _grid(24).double()[scene.occupancy(_grid(24))]])
    for k in range(3):
        q = random_rotation(100 + k, dtype=torch.float64)
        R = quat_to_matrix(q)
        turned = scene.rotated(q)
        s0, c0 = scene.query(x)
        s1, c1 = turned.query(x @ R.T)
        assert (s0 > 0).any()
        assert torch.equal(s0, s1) and torch.allclose(c0, c1)
        assert torch.equal(turned.occupancy(x @ R.T), scene.occupancy(x))
        assert torch.allclose(turned.rotation.double(), canonical_quat(q), atol=1e-6)
        # q and -q are the same rotation
        assert torch.equal(scene.rotated(-q).query(x @ R.T)[0], s1)
    # an identity rotation changes nothing; a half turn about z does change the object
    assert torch.equal(scene.rotated(identity_quat()).query(x)[0], scene.query(x)[0])
    half = scene.rotated([0.0, 0.0, 0.0, 1.0]).query(x)[0]
    assert not torch.equal(half, scene.query(x)[0])


def test_rotations_compose():
    scene = make_scene("car", 3)
    q1, q2 = random_rotation(1, dtype=torch.float64), random_rotation(2, dtype=torch.float64)
    x = _ball_points(4000, 4)
    a = scene.rotated(q1).rotated(q2).query(x)[0]
    b = scene.rotated(quat_multiply(q2, q1)).query(x)[0]
    assert torch.equal(a, b)


def test_quaternion_matrix_roundtrip():
    q = torch.stack([random_rotation(i, dtype=torch.float64) for i in range(500)])
    # 180-degree turns, the hard cases for matrix -> quaternion
    s = 1 / math.sqrt(2)
    hard = torch.tensor([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, s, s, 0], [1, 0, 0, 0.0]])
    q = torch.cat([q, hard.double()])
    R = quat_to_matrix(q)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(-1, -2), eye.expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(q), dtype=torch.float64))
    assert torch.allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    back = matrix_to_quat(R)
    assert torch.allclose(back.abs(), q.abs(), atol=1e-12) and (back[:, 0] >= 0).all()
    assert torch.allclose(quat_to_matrix(-q), R)
    # Hamilton product = matrix product; conjugate = inverse
    a, b = q[:250], q[250:500]
    assert torch.allclose(quat_to_matrix(quat_multiply(a, b)), R[:250] @ R[250:500], atol=1e-12)
    ident = quat_multiply(a, quat_conjugate(a))
    assert torch.allclose(ident, identity_quat(torch.float64).expand_as(ident), atol=1e-12)


def test_random_rotation_properties():
    q = torch.stack([random_rotation(i, dtype=torch.float64) for i in range(2000)])
    assert torch.allclose(q.norm(dim=-1), torch.ones(2000, dtype=torch.float64))
    assert (q[:, 0] >= 0).all()
    assert torch.equal(random_rotation(7), random_rotation(7))
    assert not torch.equal(random_rotation(7), random_rotation(8))
    up = torch.stack([random_rotation(i, upright=True, dtype=torch.float64) for i in range(2000)])
    assert (up[:, 1:3] == 0).all() and torch.allclose(up.norm(dim=-1), torch.ones(2000).double())
    assert (up[:, 0] >= 0).all()
    R_up = quat_to_matrix(up)
    assert torch.allclose(R_up[:, 2, 2], torch.ones(2000, dtype=torch.float64))
    assert R_up[:, :2, :2].mean(0).abs().max() < 0.06  # uniform angle about z


def test_random_rotation_is_uniform():
    """Haar measure on SO(3): E[R] = 0, and the rotation angle theta has CDF (t - sin t) / pi.

    The angle test (Kolmogorov-Smirnov, 2000 samples, critical value 1.63 / sqrt(n) at the 1%
    level) fails for e.g. uniform Euler angles or a uniform box in R^4 normalised.
    """
    q = torch.stack([random_rotation(1000 + i, dtype=torch.float64) for i in range(2000)])
    R = quat_to_matrix(q)
    assert R.mean(0).abs().max() < 0.06
    theta = torch.sort(2 * torch.acos(q[:, 0].clamp(max=1.0))).values
    cdf = (theta - torch.sin(theta)) / math.pi
    n = len(theta)
    emp_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(emp_hi - cdf, cdf - (emp_hi - 1 / n)).max().item()
    assert ks < 1.63 / math.sqrt(n), f"KS statistic {ks:.4f}"


# ------------------------------------------------------------------------------- meshes

BOX_EXTENTS = np.array([1.0, 0.6, 0.4])
RED, BLUE = np.array([230, 20, 20, 255]), np.array([20, 20, 230, 255])
FORMATS = ("obj", "ply", "stl", "off", "glb")
COLOR_FORMATS = ("obj", "ply", "glb")  # trimesh writes vertex colours to these


def _coloured_box():
    box = trimesh.creation.box(BOX_EXTENTS)
    box.visual.vertex_colors = np.where(box.vertices[:, 2:3] > 0, RED, BLUE)
    return box


def _random_points(n: int = 20000, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) * 1.4 - 0.7


@pytest.mark.parametrize("fmt", FORMATS)
def test_mesh_box_occupancy_and_colours(tmp_path, fmt):
    path = tmp_path / f"box.{fmt}"
    _coloured_box().export(path)
    scene = MeshScene(path, up="z")  # trimesh wrote z-up coordinates, whatever the format
    assert scene.name == "box" and scene.watertight
    half = (
        torch.tensor(BOX_EXTENTS / 2, dtype=torch.float32) * 0.6 / np.linalg.norm(BOX_EXTENTS / 2)
    )
    x = _random_points()
    analytic = (x.abs() <= half).all(dim=-1)
    occ = scene.occupancy(x)
    assert (occ == analytic).float().mean() > 0.99
    sigma, rgb = scene.query(x)
    assert torch.equal(sigma, occ.float() * scene.density)
    top, bottom = occ & (x[:, 2] > 0.5 * half[2]), occ & (x[:, 2] < -0.5 * half[2])
    if fmt in COLOR_FORMATS:
        assert scene.has_colors
        assert (rgb[top, 0] > rgb[top, 2] + 0.3).all(), "top vertices are red"
        assert (rgb[bottom, 2] > rgb[bottom, 0] + 0.3).all(), "bottom vertices are blue"
        assert torch.allclose(rgb[top, 1], torch.tensor(20 / 255), atol=0.02)
    else:  # no colours in the file: the height palette, a function of z only
        assert not scene.has_colors
        same_z = x.clone()
        same_z[:, :2] = 0
        assert torch.allclose(rgb[occ], scene.query(same_z)[1][occ])
        assert (rgb[top] - rgb[bottom].mean(0)).abs().sum(-1).min() > 0.1


@pytest.mark.parametrize("fmt", ("ply", "stl"))
def test_mesh_sphere_occupancy(tmp_path, fmt):
    path = tmp_path / f"ball.{fmt}"
    trimesh.creation.icosphere(subdivisions=3, radius=2.0).export(path)
    scene = MeshScene(path, radius=0.5)
    x = _random_points(seed=1)
    agree = (scene.occupancy(x) == (x.norm(dim=-1) < 0.5)).float().mean()
    assert agree > 0.99


def test_mesh_occupancy_grid_cache_matches_ray_tests():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    exact, cached = MeshScene(sphere), MeshScene(sphere, grid_resolution=48)
    x = _random_points(seed=6)
    agree = (exact.occupancy(x) == cached.occupancy(x)).float().mean()
    assert 0.98 < agree < 1.0  # equal up to the cell size, and really a lookup


def test_mesh_from_trimesh_object_and_rotation():
    scene = MeshScene(trimesh.creation.cylinder(radius=0.2, height=1.0), name="rod")
    assert scene.name == "rod"
    x = _ball_points(5000, 5).float()
    q = random_rotation(3)
    R = quat_to_matrix(q)
    occ = scene.occupancy(x)
    assert occ.any() and torch.equal(scene.rotated(q).occupancy(x @ R.T), occ)
    # up="y" turns +y into +z, so the rod (along z in its file) lies along y afterwards
    flat = MeshScene(trimesh.creation.cylinder(radius=0.2, height=1.0), up="y")
    pts = _grid(32)[flat.occupancy(_grid(32))]
    ext = pts.max(0).values - pts.min(0).values
    assert ext[1] > 2 * ext[2]


def _long_axis(scene: MeshScene) -> int:
    pts = _grid(32)[scene.occupancy(_grid(32))]
    return int((pts.max(0).values - pts.min(0).values).argmax())


@pytest.mark.parametrize(
    "fmt,up", [("obj", "y"), ("glb", "y"), ("gltf", "y"), ("stl", "z"), ("ply", "z"), ("off", "z")]
)
def test_mesh_up_axis_follows_the_format_convention_unless_given(tmp_path, fmt, up):
    """A post standing on +y in its file (the OBJ / glTF convention) stands on +z in the world
    when the format says y-up; formats without that convention keep z unless told."""
    assert default_up(f"x.{fmt.upper()}") == up
    post = trimesh.creation.cylinder(radius=0.15, height=1.0)
    post.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    assert np.ptp(post.vertices, axis=0).argmax() == 1  # tall along y in the file
    path = tmp_path / f"post.{fmt}"
    post.export(path)
    scene = MeshScene(path)
    assert (scene.up, scene.up_source) == (up, "format")
    assert _long_axis(scene) == (2 if up == "y" else 1)
    given = MeshScene(path, up="y")
    assert given.up_source == "given" and _long_axis(given) == 2
    assert MeshScene(post).up_source == "object"  # an in-memory mesh is taken as z-up


def test_non_watertight_mesh_warns_and_still_fills(tmp_path):
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    box.update_faces(np.arange(len(box.faces)) >= 2)  # drop one side (two triangles)
    box.remove_unreferenced_vertices()
    assert not box.is_watertight
    path = tmp_path / "open_box.obj"
    box.export(path)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        scene = MeshScene(path, voxel_resolution=64)
    half = 0.6 / math.sqrt(3)
    x = _random_points(seed=2)
    analytic = (x.abs() <= half).all(dim=-1)
    agree = (scene.occupancy(x) == analytic).float().mean()
    assert agree > 0.98, f"voxel fill agrees on {agree:.3%} of points"


@pytest.mark.parametrize(
    "filename,content",
    [
        ("empty.obj", b""),
        ("empty.off", b""),
        ("garbage.stl", b"\x00\xffnot a mesh at all"),
        ("garbage.glb", b"definitely not glTF"),
        ("header_only.ply", b"ply\nformat ascii 1.0\nend_header\n"),
        ("unknown.xyzzy", b"v 0 0 0\n"),
    ],
)
def test_unreadable_or_empty_mesh_raises_naming_the_file(tmp_path, filename, content):
    path = tmp_path / filename
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=re.escape(filename)):
            MeshScene(path)


def test_missing_mesh_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.obj"):
        MeshScene(tmp_path / "nope.obj")


def test_packaged_meshes_lists_existing_mesh_files():
    found = packaged_meshes()
    assert isinstance(found, list)
    assert all(p.is_file() and p.suffix.lower() in MESH_SUFFIXES for p in found)
    assert found == sorted(set(found))


# --------------------------------------------------------------------- packaged real meshes
needs_pybullet_data = pytest.mark.skipif(
    real_module._package_dir("pybullet_data") is None,
    reason='pybullet_data not installed (pip install "graphnerf[meshes]")',
)


@needs_pybullet_data
@pytest.mark.parametrize("name", list(REAL_MESHES))
def test_real_meshes_are_installed_placed_and_solid(name):
    path = real_mesh_path(name)
    assert path.is_file() and path in packaged_meshes()
    scene = real_mesh(name, voxel_resolution=64, color_resolution=32)
    assert scene.name == name and scene.class_name == "mesh"
    # placed: centred, every vertex within the bounding-sphere radius 0.6 (rotations stay inside)
    v = torch.as_tensor(np.asarray(scene.mesh.vertices)[np.unique(scene.mesh.faces)])
    assert v.norm(dim=-1).max() <= 0.6 + 1e-6
    mid = (v.min(0).values + v.max(0).values) / 2
    assert torch.allclose(mid, torch.zeros(3, dtype=mid.dtype), atol=1e-6)
    occ = scene.occupancy(_grid(32))
    frac = occ.float().mean().item()
    assert 0.005 < frac < 0.5, (name, frac)  # a solid object, neither empty nor the whole box
    sigma, rgb = scene(_grid(32)[occ])
    assert (sigma > 0).all() and ((rgb >= 0) & (rgb <= 1)).all()


@needs_pybullet_data
def test_textured_real_mesh_has_its_texture_colours():
    duck = real_mesh("duck", voxel_resolution=64, color_resolution=32)
    assert duck.has_colors
    rgb = duck(_grid(32)[duck.occupancy(_grid(32))])[1]
    # a yellow duck: red and green well above blue on most of its body
    yellow = (rgb[:, 0] > rgb[:, 2] + 0.3) & (rgb[:, 1] > rgb[:, 2] + 0.3)
    assert yellow.float().mean() > 0.6


def test_real_mesh_errors_name_the_mesh_and_the_fix(monkeypatch):
    with pytest.raises(KeyError, match="unknown real mesh 'teapot'.*bunny"):
        real_mesh_path("teapot")
    absent = real_module.RealMesh("no_such_package_xyz", "a.obj", "z", "graphnerf[meshes]")
    monkeypatch.setitem(REAL_MESHES, "ghost", absent)
    with pytest.raises(FileNotFoundError, match=r"'ghost'.*no_such_package_xyz.*pip install"):
        real_mesh_path("ghost")
    assert "ghost" not in real_module.available_real_meshes()


# ------------------------------------------------------------------------------- contact sheet


def test_contact_sheet_writes_png(tmp_path):
    pytest.importorskip("graphnerf.render", reason="renderer (graphnerf.render) not importable")
    pytest.importorskip("matplotlib")
    out = make_contact_sheet(
        tmp_path / "sheet.png", classes=("chair", "car"), seeds=(0, 1), size=20, n_samples=24
    )
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(out)
    assert img.ndim == 3 and img[..., :3].std() > 0.05  # tiles and labels, not a blank page


def test_describe_rotation_names_angle_and_axis():
    """The labels of zoo.png: angle in degrees and unit axis; q and -q read the same."""
    c, s = math.cos(math.radians(60)), math.sin(math.radians(60))
    assert describe_rotation([1.0, 0.0, 0.0, 0.0]) == "identity"
    assert describe_rotation([c, 0.0, 0.0, s]) == "120° about (0.00,0.00,1.00)"
    assert describe_rotation([-c, 0.0, 0.0, -s]) == "120° about (0.00,0.00,1.00)"
    q = random_rotation(5)
    angle, axis = axis_angle(q)
    R = quat_to_matrix(q).double()
    assert math.isclose(math.degrees(math.acos((R.trace().item() - 1) / 2)), angle, abs_tol=1e-3)
    assert torch.allclose(
        R @ torch.tensor(axis, dtype=torch.float64),
        torch.tensor(axis, dtype=torch.float64),
        atol=1e-5,
    )
