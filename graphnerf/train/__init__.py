"""Training cross-architecture NeRF encoders: ``graphnerf train`` and the encoder checkpoints.

* :func:`load_encoder` / :func:`build_encoder` / :class:`TrainedEncoder`: the encoder-loading
  contract (:mod:`graphnerf.train.checkpoint`) used by ``graphnerf embed`` and the benchmarks;
* :class:`TrainModule`: encoder + projection + rotation head + rendering decoder;
* :class:`TeacherRayCache`: the teacher renders of the rendering loss, cached beside the zoo.
"""

from .checkpoint import (
    FORMAT,
    PRETRAINED,
    CheckpointFormatError,
    TrainedEncoder,
    build_encoder,
    load_encoder,
    read_checkpoint,
    save_checkpoint,
)
from .heads import PairRotationHead, ProjectionHead
from .module import LOSS_TERMS, MODEL_NAMES, TrainModule, resolve_heads
from .teacher import TeacherRayCache, cached_rendering_loss, render_decoder

__all__ = [
    "FORMAT",
    "LOSS_TERMS",
    "MODEL_NAMES",
    "PRETRAINED",
    "CheckpointFormatError",
    "PairRotationHead",
    "ProjectionHead",
    "TeacherRayCache",
    "TrainModule",
    "TrainedEncoder",
    "build_encoder",
    "cached_rendering_loss",
    "load_encoder",
    "read_checkpoint",
    "render_decoder",
    "resolve_heads",
    "save_checkpoint",
]
