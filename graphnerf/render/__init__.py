"""Pure-torch volume rendering of any ``x [N, 3] -> (sigma [N], rgb [N, 3])`` callable.

Cameras (OpenGL convention, z up), ray generation and box intersection, stratified sampling,
alpha compositing, PSNR, and PNG / contact-sheet writing.
"""

from .cameras import (
    EVAL_FOV_DEG,
    EVAL_RADIUS,
    EVAL_VIEWS,
    Camera,
    eval_cameras,
    look_at,
    orbit_cameras,
    spherical_to_cartesian,
)
from .image import image_grid, save_labeled_grid, save_png, to_uint8
from .metrics import mse, psnr, psnr_per_image
from .rays import DEFAULT_AABB, as_aabb, camera_rays, ray_aabb, resolve_aabb
from .volume import FieldFn, composite, render_image, render_rays, stratified_t

__all__ = [
    "DEFAULT_AABB",
    "EVAL_FOV_DEG",
    "EVAL_RADIUS",
    "EVAL_VIEWS",
    "Camera",
    "FieldFn",
    "as_aabb",
    "camera_rays",
    "composite",
    "eval_cameras",
    "image_grid",
    "look_at",
    "mse",
    "orbit_cameras",
    "psnr",
    "psnr_per_image",
    "ray_aabb",
    "render_image",
    "render_rays",
    "resolve_aabb",
    "save_labeled_grid",
    "save_png",
    "spherical_to_cartesian",
    "stratified_t",
    "to_uint8",
]
