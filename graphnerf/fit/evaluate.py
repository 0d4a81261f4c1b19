"""How well a field reproduces a scene: PSNR on the 4 held-out views and occupancy IoU.

The views are :func:`graphnerf.render.eval_cameras`, rendered from the field and from the scene
itself with the same renderer, box and samples; distillation never sees rendered views, so they
are held out. Occupancy is compared on the centres of a fixed grid over the field's AABB: the
field is occupied where its alpha over the standard step (:func:`~graphnerf.fit.standard_step`,
AABB diagonal / 128) exceeds 1/2; the scene where ``scene.occupancy(x)`` holds, or by the same
alpha rule when it has no such method.
"""

from __future__ import annotations

import torch

from ..fields import RadianceField
from ..render import eval_cameras, psnr_per_image, render_image
from .distill import SceneFn, alpha, grid_centres, query_scene, scene_occupancy, standard_step

__all__ = ["evaluate", "occupancy_iou"]


def occupancy_iou(field: RadianceField, scene: SceneFn, res: int = 64) -> float:
    """IoU of the field's and the scene's occupancy on the ``res^3`` cell centres of the AABB.

    1.0 when both are empty.
    """
    step = standard_step(field.aabb)
    x = grid_centres(field.aabb, res).to(field.aabb.device)
    occ_field = alpha(query_scene(field, x)[0], step) > 0.5
    occ_scene = scene_occupancy(scene, x, step)
    union = int((occ_field | occ_scene).sum())
    if union == 0:
        return 1.0
    return int((occ_field & occ_scene).sum()) / union


def evaluate(
    field: RadianceField,
    scene: SceneFn,
    size: int = 128,
    n_samples: int = 128,
    iou_res: int = 64,
    background: float = 1.0,
) -> dict:
    """PSNR of the field's renders against the scene's on the 4 eval views, and occupancy IoU.

    Args:
        field: the fitted field.
        scene: ``x -> (sigma, rgb)`` (optionally with ``occupancy``), e.g. the distilled scene.
        size: image height = width in pixels.
        n_samples: samples per ray (both renders).
        iou_res: cells per axis of the IoU grid.
        background: background colour of both renders.
    Returns:
        ``{"psnr": mean of the 4 views' PSNRs (dB), "psnr_views": [4] floats, "iou": float}``;
        PSNRs are ``inf`` for identical renders.
    """
    cams = eval_cameras(size, size)
    kw = {"n_samples": n_samples, "background": background, "aabb": field.aabb}
    was_training = field.training
    field.eval()
    try:
        pred = torch.stack([render_image(field, cam, **kw) for cam in cams])
        target = torch.stack([render_image(scene, cam, **kw).to(pred) for cam in cams])
        iou = occupancy_iou(field, scene, iou_res)
    finally:
        field.train(was_training)
    views = [float(v) for v in psnr_per_image(pred.clamp(0, 1), target.clamp(0, 1))]
    return {"psnr": sum(views) / len(views), "psnr_views": views, "iou": iou}
