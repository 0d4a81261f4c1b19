"""Encoders and decoders of NeRF parameters.

* :class:`GMNEncoder` — graph metanetwork over parameter graphs (``graphnerf.to_graph``);
* :class:`SANEAutoencoder` — SANE-style transformer over token sequences (``graphnerf.tokens``),
  with attention-pooling embedding and rotation heads;
* :class:`FieldDecoder` — nf2vec-style conditional field, rendered like any NeRF.
"""

from .decoder import BoundFieldDecoder, DecoderConfig, FieldDecoder
from .gmn import GMNConfig, GMNEncoder
from .sane import (
    AttentionPooling,
    RotationHead,
    SANEAutoencoder,
    SANEConfig,
    SANEDecoder,
    SANEEncoder,
    masked_reconstruction_loss,
)

__all__ = [
    "AttentionPooling",
    "BoundFieldDecoder",
    "DecoderConfig",
    "FieldDecoder",
    "GMNConfig",
    "GMNEncoder",
    "RotationHead",
    "SANEAutoencoder",
    "SANEConfig",
    "SANEDecoder",
    "SANEEncoder",
    "masked_reconstruction_loss",
]
