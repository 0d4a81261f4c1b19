"""Fitting fields to scenes: 3D distillation (one at a time or batched), fitting from posed images,
and evaluation against the scene (PSNR on the 4 held-out views, occupancy IoU)."""

from .batched import StackedFields, distill_batch, distill_stacked
from .distill import (
    BandLimit,
    DistillConfig,
    FitResult,
    SceneSamples,
    alpha,
    distill,
    distill_loss,
    fit_config,
    standard_step,
)
from .evaluate import evaluate, occupancy_iou
from .images import ImageFitConfig, fit_images

__all__ = [
    "BandLimit",
    "DistillConfig",
    "FitResult",
    "ImageFitConfig",
    "SceneSamples",
    "StackedFields",
    "alpha",
    "distill",
    "distill_batch",
    "distill_loss",
    "distill_stacked",
    "evaluate",
    "fit_config",
    "fit_images",
    "occupancy_iou",
    "standard_step",
]
