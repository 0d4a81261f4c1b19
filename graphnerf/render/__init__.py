"""Pure-torch volume rendering of any ``x [N, 3] -> (sigma [N], rgb [N, 3])`` callable.

Cameras (OpenGL convention, z up), ray generation and box intersection, stratified sampling,
alpha compositing, empty-space skipping (an occupancy grid built from the field's density, used
by :func:`render_image` by default), PSNR, and PNG / contact-sheet writing.
"""

from .cameras import (
    EVAL_FILL,
    EVAL_FOV_DEG,
    EVAL_RADIUS,
    EVAL_VIEWS,
    Camera,
    bounding_sphere,
    eval_cameras,
    framing_distance,
    look_at,
    orbit_cameras,
    spherical_to_cartesian,
)
from .image import image_grid, save_labeled_grid, save_png, to_uint8
from .metrics import coverage, foreground_mask, mse, psnr, psnr_fg, psnr_per_image
from .occupancy import (
    OccupancyGrid,
    cell_max_density,
    grid_for,
    occupied_at,
    skip_threshold,
)
from .rays import DEFAULT_AABB, as_aabb, camera_rays, ray_aabb, resolve_aabb
from .volume import FieldFn, composite, render_image, render_rays, stratified_t

__all__ = [
    "DEFAULT_AABB",
    "EVAL_FILL",
    "EVAL_FOV_DEG",
    "EVAL_RADIUS",
    "EVAL_VIEWS",
    "Camera",
    "FieldFn",
    "OccupancyGrid",
    "as_aabb",
    "bounding_sphere",
    "camera_rays",
    "cell_max_density",
    "composite",
    "coverage",
    "eval_cameras",
    "grid_for",
    "foreground_mask",
    "framing_distance",
    "image_grid",
    "look_at",
    "mse",
    "occupied_at",
    "orbit_cameras",
    "psnr",
    "psnr_fg",
    "psnr_per_image",
    "ray_aabb",
    "render_image",
    "render_rays",
    "resolve_aabb",
    "save_labeled_grid",
    "save_png",
    "skip_threshold",
    "spherical_to_cartesian",
    "stratified_t",
    "to_uint8",
]
