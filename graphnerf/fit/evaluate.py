"""How well a field reproduces a scene: PSNR and foreground PSNR on 4 held-out views, and IoU.

The views are :func:`graphnerf.render.eval_cameras` framing the scene's object: the cameras look
at the centre of the sphere bounding the scene's occupied cells (:func:`object_sphere`) from the
distance at which that sphere spans 95 % of the field of view, so the object fills most of each
frame (at a fixed distance of 3 an object covered 1-6 % of it, and PSNR mostly scored the white
background). Field and scene are rendered with the same renderer, box, cameras and samples;
distillation never sees rendered views, so they are held out.

Reported per view and averaged: ``psnr`` over the whole frame, ``psnr_fg`` over the pixels where
the scene's or the field's render is opaque (:func:`graphnerf.render.psnr_fg`: missing parts,
floaters and wrong colours count, background does not) and ``coverage``, the object fraction of
the scene's frame. Occupancy is compared on the centres of a fixed grid over the field's AABB:
the field is occupied where its alpha over the standard step
(:func:`~graphnerf.fit.standard_step`, AABB diagonal / 128) exceeds 1/2; the scene where
``scene.occupancy(x)`` holds, or by the same alpha rule when it has no such method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fields import RadianceField
from ..render import (
    bounding_sphere,
    camera_rays,
    coverage,
    eval_cameras,
    psnr_fg,
    psnr_per_image,
    render_rays,
)
from ..render.occupancy import grid_for
from ..render.volume import FieldFn
from .distill import SceneFn, alpha, grid_centres, query_scene, scene_occupancy, standard_step

__all__ = [
    "FRAME_RES",
    "evaluate",
    "evaluate_sizes",
    "object_sphere",
    "occupancy_iou",
    "render_views",
]

#: Least cells per axis of the grid on which the object is located to frame it.
FRAME_RES = 48


def _iou(a: Tensor, b: Tensor) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def _grid_occupancy(
    field: RadianceField, scene: SceneFn, res: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Cell centres ``[res^3, 3]`` of the field's AABB and the field's / scene's occupancy there."""
    step = standard_step(field.aabb)
    x = grid_centres(field.aabb, res).to(field.aabb.device)
    occ_field = alpha(query_scene(field, x)[0], step) > 0.5
    occ_scene = scene_occupancy(scene, x, step)
    return x, occ_field, occ_scene


def _grid_occupancy_scene(aabb: Tensor, scene: SceneFn, res: int) -> tuple[Tensor, Tensor]:
    x = grid_centres(aabb, res).to(aabb.device)
    return x, scene_occupancy(scene, x, standard_step(aabb))


def occupancy_iou(field: RadianceField, scene: SceneFn, res: int = 64) -> float:
    """IoU of the field's and the scene's occupancy on the ``res^3`` cell centres of the AABB.

    1.0 when both are empty.
    """
    _, occ_field, occ_scene = _grid_occupancy(field, scene, res)
    return _iou(occ_field, occ_scene)


def object_sphere(x: Tensor, occupied: Tensor, aabb: Tensor) -> tuple[Tensor, float]:
    """Sphere bounding the occupied cells of a grid: ``x [N, 3]`` cell centres (of a cubic grid
    over ``aabb [6]``), ``occupied [N]`` bool -> (centre ``[3]``, radius), the radius padded by
    half a cell's diagonal. With nothing occupied, the sphere bounding the AABB."""
    box = aabb.detach().to(torch.float32).cpu().reshape(6)
    if not bool(occupied.any()):
        return bounding_sphere(torch.stack([box[:3], box[3:]]))
    res = round(x.shape[0] ** (1.0 / 3.0))
    half_cell = 0.5 * float(torch.linalg.vector_norm(box[3:] - box[:3])) / max(res, 1)
    return bounding_sphere(x[occupied.to(x.device)].cpu(), pad=half_cell)


def _corners(occupied: Tensor, x: Tensor, aabb: Tensor) -> Tensor:
    """The 8 corners of every occupied cell ``[N, 3]`` (centres) of the grid ``x`` over ``aabb``:
    ``[8 N, 3]``, so that framing them frames whole cells."""
    box = aabb.detach().to(torch.float32).cpu().reshape(6)
    res = round(x.shape[0] ** (1.0 / 3.0))
    half = 0.5 * (box[3:] - box[:3]) / max(res, 1)
    signs = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=torch.float32)
    return (occupied[:, None, :] + (2 * signs - 1) * half).reshape(-1, 3)


def render_views(
    fn: FieldFn,
    cams: list,
    aabb: Tensor,
    n_samples: int,
    background: float,
    skip_empty: bool = True,
) -> tuple[Tensor, Tensor]:
    """Renders of ``fn`` from each camera: ``rgb [V, H, W, 3]`` and ``opacity [V, H, W]``.

    With ``skip_empty`` one occupancy grid of ``fn``
    (:func:`graphnerf.render.occupancy.grid_for`) serves all views: empty-space skipping, same
    image up to the skipped density (see :func:`graphnerf.render.render_rays`).
    """
    grid = grid_for(fn, aabb.detach()) if skip_empty else None
    rgbs, opacities = [], []
    with torch.no_grad():
        for cam in cams:
            origins, directions = camera_rays(cam.to(aabb.device))
            out = render_rays(
                fn,
                origins,
                directions,
                aabb=aabb,
                n_samples=n_samples,
                background=background,
                occupancy=grid,
            )
            rgbs.append(out["rgb"].reshape(cam.height, cam.width, 3))
            opacities.append(out["opacity"].reshape(cam.height, cam.width))
    return torch.stack(rgbs), torch.stack(opacities)


def evaluate(
    field: RadianceField,
    scene: SceneFn,
    size: int = 128,
    n_samples: int = 128,
    iou_res: int = 64,
    background: float = 1.0,
) -> dict:
    """PSNR and foreground PSNR of the field's renders against the scene's on the 4 eval views
    framing the scene's object, the object's coverage of the frame, and occupancy IoU.

    Args:
        field: the fitted field.
        scene: ``x -> (sigma, rgb)`` (optionally with ``occupancy``), e.g. the distilled scene.
        size: image height = width in pixels.
        n_samples: samples per ray (both renders).
        iou_res: cells per axis of the IoU grid (also locates the object for the cameras, when
            it has at least :data:`FRAME_RES` cells per axis; else a grid of that many does).
        background: background colour of both renders.
    Returns:
        ``{"psnr", "psnr_fg", "coverage": means over the 4 views, "psnr_views",
        "psnr_fg_views", "coverage_views": [4] floats, "iou": float, "sphere": [cx, cy, cz, r]
        framed}``; PSNRs are in dB, ``inf`` for renders that agree exactly (on the foreground).
    """
    return evaluate_sizes(field, scene, (size,), n_samples, iou_res, background)[size]


def evaluate_sizes(
    field: RadianceField,
    scene: SceneFn,
    sizes: tuple[int, ...] = (64, 128),
    n_samples: int = 128,
    iou_res: int = 64,
    background: float = 1.0,
    reference: dict | None = None,
    keep_renders: bool = False,
) -> dict[int, dict]:
    """:func:`evaluate` at several image sizes at once, optionally reusing the scene's side.

    Args:
        field, scene, n_samples, iou_res, background: as for :func:`evaluate`.
        sizes: image heights = widths in pixels.
        reference: a dict owned by the caller, empty at first, kept for one scene: the scene's
            occupancy grid, cameras and renders are stored there and reused by later calls with
            the same scene (fields of the same AABB), e.g. when several fits of one scene are
            compared. A call with another AABB raises ``ValueError``.
        keep_renders: also return ``"renders"``: ``(pred [4, S, S, 3], opacity_pred [4, S, S],
            target [4, S, S, 3], opacity_target [4, S, S])``, clamped to [0, 1], per size.
    Returns:
        ``{size: evaluate's dict}``, every entry with the same ``iou`` and ``sphere``.
    """
    ref = {} if reference is None else reference
    box = tuple(float(v) for v in field.aabb.detach().cpu().reshape(-1))
    if ref.setdefault("aabb", box) != box:
        raise ValueError(f"reference was filled for AABB {ref['aabb']}, the field's is {box}")
    was_training = field.training
    field.eval()
    out = {}
    try:
        step = standard_step(field.aabb)
        key = ("occupancy", iou_res)
        if key not in ref:
            x, occ_scene = _grid_occupancy_scene(field.aabb, scene, iou_res)
            if iou_res < FRAME_RES:  # too coarse to find thin objects: a grid of its own
                x_f, occ = _grid_occupancy_scene(field.aabb, scene, FRAME_RES)
            else:
                x_f, occ = x, occ_scene
            centre, radius = object_sphere(x_f, occ, field.aabb)
            points = _corners(x_f[occ.to(x_f.device)].cpu(), x_f, field.aabb) if occ.any() else None
            ref[key] = (x, occ_scene, centre, radius, points)
        x, occ_scene, centre, radius, points = ref[key]
        with torch.no_grad():
            occ_field = alpha(query_scene(field, x)[0], step) > 0.5
        iou = _iou(occ_field, occ_scene)
        for size in sizes:
            cams = eval_cameras(size, size, center=centre, radius=radius, points=points)
            pred, op_pred = render_views(field, cams, field.aabb, n_samples, background)
            rkey = ("render", iou_res, size, n_samples, float(background))
            if rkey not in ref:
                ref[rkey] = render_views(scene, cams, field.aabb, n_samples, background)
            target, op_target = ref[rkey]
            target, op_target = target.to(pred), op_target.to(op_pred)
            pred, target = pred.clamp(0, 1), target.clamp(0, 1)
            views = [float(v) for v in psnr_per_image(pred, target)]
            fg = [float(v) for v in psnr_fg(pred, target, op_pred, op_target)]
            cover = [float(v) for v in coverage(op_target)]
            out[size] = {
                "psnr": sum(views) / len(views),
                "psnr_views": views,
                "psnr_fg": sum(fg) / len(fg),
                "psnr_fg_views": fg,
                "coverage": sum(cover) / len(cover),
                "coverage_views": cover,
                "iou": iou,
                "sphere": [*(float(v) for v in centre), float(radius)],
            }
            if keep_renders:
                out[size]["renders"] = (pred, op_pred, target, op_target)
    finally:
        field.train(was_training)
    return out
