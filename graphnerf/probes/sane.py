"""SANE in the probe runner: fields -> :class:`~graphnerf.tokens.Tokenizer` -> ``embed``.

The network and the tokenizer are the defaults of ``configs/model/sane.yaml`` (``overrides``
change the network for ablations). Points: while the module is in training mode every call to
:meth:`SANEProbe.embed` (one training batch) tokenises its fields at a fresh draw of
``n_points`` uniform points when the tokenizer's ``resample`` is on (the default; the same draw
for every field of the batch, as ``sampling: same`` shares points between views); in eval mode,
and always when ``resample`` is off, every field is read at one fixed point set drawn from
``point_seed``. The trained parameters are the encoder's and the attention pooling's (the
decoder, projection and rotation head take no part in ``embed``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..config import load_config
from ..fields import RadianceField
from ..models.sane import SANEConfig
from ..tokens import Tokenizer
from ..tokens.tokenizer import collate

__all__ = ["SANEProbe"]


class SANEProbe:
    """:class:`~graphnerf.probes.runner.ProbeModel` for :meth:`SANEAutoencoder.embed`.

    Args:
        point_seed: seed of the fixed evaluation point set.
        seed: seed of the per-batch training draws.
        overrides: :class:`SANEConfig` fields replacing the YAML's (ablations).
        token_overrides: :class:`Tokenizer` fields replacing the YAML's (e.g. ``n_points``).
    """

    def __init__(
        self,
        point_seed: int = 0,
        seed: int = 0,
        overrides: Mapping[str, Any] | None = None,
        token_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        cfg = load_config("model/sane").model
        self.tokenizer = dataclasses.replace(
            Tokenizer.from_config(cfg.tokens), **dict(token_overrides or {})
        )
        net = SANEConfig.from_config(cfg.net)
        self.autoencoder = dataclasses.replace(net, **dict(overrides or {})).build()
        self.module = nn.ModuleDict(
            {"encoder": self.autoencoder.encoder, "pool": self.autoencoder.pool}
        )
        self.embedding_dim = self.autoencoder.embedding_dim
        self.points = self.tokenizer.sample(torch.Generator().manual_seed(point_seed))[0]
        self.generator = torch.Generator().manual_seed(seed)

    def prepare(self, fields: Sequence[RadianceField]) -> list[RadianceField]:
        """Fields are tokenised per batch (the points change while training)."""
        return list(fields)

    def embed(self, items: Sequence[RadianceField]) -> Tensor:
        """``[B, d_latent]`` embeddings of fields (fresh points per call while training)."""
        pts = self.points
        if self.module.training and self.tokenizer.resample:
            pts = self.tokenizer.sample(self.generator)[0]
        return self.autoencoder.embed(collate([self.tokenizer(f, pts) for f in items]))
