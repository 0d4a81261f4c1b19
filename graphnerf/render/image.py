"""Writing images and contact sheets.

Files are written to a temporary name in the destination folder and then renamed with
``os.replace``, so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..atomic import atomic_write

__all__ = ["image_grid", "save_labeled_grid", "save_png", "to_uint8"]


def _as_image(image: Tensor | np.ndarray, name: str = "image") -> Tensor:
    img = torch.as_tensor(image).detach().cpu()
    if img.ndim != 3 or img.shape[-1] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape [H, W, 3] (float RGB in [0, 1]), got {list(img.shape)}"
        )
    if not img.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got {img.dtype}")
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return img


def to_uint8(image: Tensor | np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float image in [0, 1] (values outside are clipped) -> ``uint8`` numpy array."""
    img = _as_image(image)
    return (img.to(torch.float32).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def _atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Create the parent folders, then write atomically (see :mod:`graphnerf.atomic`)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dest, write)


def save_png(image: Tensor | np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``[H, W, 3]`` float image in [0, 1] as an 8-bit RGB PNG; returns the path.

    Values are clipped to [0, 1] and rounded to the nearest of 256 levels. Parent folders are
    created. The file is written atomically (temporary file + ``os.replace``).
    """
    from PIL import Image

    pixels = to_uint8(image)
    return _atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))


def image_grid(
    images: Sequence[Tensor], ncols: int, pad: int = 2, pad_value: float = 1.0
) -> Tensor:
    """Tile same-size images ``[H, W, 3]`` into a contact sheet, row by row.

    Args:
        images: non-empty list of ``[H, W, 3]`` tensors of identical shape.
        ncols: tiles per row (>= 1); the last row is filled with ``pad_value``.
        pad: pixels of border around and between tiles (>= 0).
        pad_value: colour of the border and empty tiles.

    Returns:
        ``[rows * (H + pad) + pad, ncols * (W + pad) + pad, 3]`` with ``rows = ceil(n / ncols)``.
    """
    if len(images) == 0:
        raise ValueError("image_grid: images must be a non-empty list of [H, W, 3] tensors")
    if isinstance(ncols, bool) or int(ncols) != ncols or ncols < 1:
        raise ValueError(f"image_grid: ncols must be a positive integer, got {ncols!r}")
    if isinstance(pad, bool) or int(pad) != pad or pad < 0:
        raise ValueError(f"image_grid: pad must be a non-negative integer, got {pad!r}")
    ncols, pad = int(ncols), int(pad)
    tiles = [torch.as_tensor(img) for img in images]
    shape = tiles[0].shape
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"image_grid: images must have shape [H, W, 3], got {list(shape)}")
    for i, tile in enumerate(tiles):
        if tile.shape != shape:
            raise ValueError(
                f"image_grid: all images must have shape {list(shape)}, "
                f"image {i} has {list(tile.shape)}"
            )
    stack = torch.stack([t.to(tiles[0]) for t in tiles])  # [n, H, W, 3]
    if not stack.is_floating_point():
        stack = stack.to(torch.float32)
    n, h, w, _ = stack.shape
    rows = math.ceil(n / ncols)
    blank = torch.full(
        (rows * ncols - n, h, w, 3), pad_value, dtype=stack.dtype, device=stack.device
    )
    stack = torch.cat([stack, blank])
    # Border on the bottom/right of every tile, plus one on the top/left of the whole sheet.
    cells = torch.full(
        (rows * ncols, h + pad, w + pad, 3), pad_value, dtype=stack.dtype, device=stack.device
    )
    cells[:, :h, :w] = stack
    sheet = cells.reshape(rows, ncols, h + pad, w + pad, 3).permute(0, 2, 1, 3, 4)
    sheet = sheet.reshape(rows * (h + pad), ncols * (w + pad), 3)
    out = torch.full(
        (sheet.shape[0] + pad, sheet.shape[1] + pad, 3),
        pad_value,
        dtype=stack.dtype,
        device=stack.device,
    )
    out[pad:, pad:] = sheet
    return out


def save_labeled_grid(
    images: Sequence[Tensor],
    labels: Sequence[str],
    path: str | os.PathLike,
    ncols: int,
    tile_inches: float = 2.0,
    dpi: int = 100,
) -> Path:
    """Save images ``[H, W, 3]`` in [0, 1] as a grid with a title over each tile (matplotlib).

    Uses an ``Agg`` canvas on a standalone ``Figure`` (no pyplot global state, no display needed);
    the figure is cleared after saving and nothing keeps a reference to it. The output format
    follows the path's suffix (``.png`` if none). Written atomically.
    """
    if len(images) == 0:
        raise ValueError("save_labeled_grid: images must be a non-empty list")
    if len(labels) != len(images):
        raise ValueError(
            f"save_labeled_grid: need one label per image, got {len(labels)} labels "
            f"for {len(images)} images"
        )
    if isinstance(ncols, bool) or int(ncols) != ncols or ncols < 1:
        raise ValueError(f"save_labeled_grid: ncols must be a positive integer, got {ncols!r}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arrays = [to_uint8(_as_image(img, f"images[{i}]")) for i, img in enumerate(images)]
    ncols = min(int(ncols), len(arrays))
    rows = math.ceil(len(arrays) / ncols)
    fig = Figure(figsize=(tile_inches * ncols, (tile_inches + 0.3) * rows), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, ncols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(arrays):
            ax.imshow(arrays[k], interpolation="nearest")
            ax.set_title(str(labels[k]), fontsize=8)
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        return _atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))
    finally:
        fig.clear()  # the figure was never registered with pyplot, so nothing else holds it
