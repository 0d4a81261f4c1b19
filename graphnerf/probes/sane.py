"""SANE in the probe runner: fields -> :class:`~graphnerf.tokens.Tokenizer` -> ``embed``.

The network and the tokenizer are the defaults of ``configs/model/sane.yaml`` (``overrides``
change the network for ablations). Points: while the module is in training mode every call to
:meth:`SANEProbe.embed` (one training batch) tokenises its fields at a fresh draw of
``n_points`` uniform points when the tokenizer's ``resample`` is on (the default; the same draw
for every field of the batch, as ``sampling: same`` shares points between views), and the
training augmentations of the YAML's ``augment`` block are applied as in SANE training (a
random permutation of every field's hidden neurons, multiplicative token noise); in eval mode,
and always when ``resample`` is off, every field is read at one fixed point set drawn from
``point_seed``, without augmentation. The trained parameters are the encoder's and the attention pooling's (the
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
from ..tokens import Tokenizer, multiplicative_noise, permute_hidden_neurons
from ..tokens.tokenizer import TokenSequence, collate

__all__ = ["SANEProbe"]


class SANEProbe:
    """:class:`~graphnerf.probes.runner.ProbeModel` for :meth:`SANEAutoencoder.embed`.

    Args:
        point_seed: seed of the fixed evaluation point set.
        seed: seed of the network's initialisation and of the per-batch training draws.
        overrides: :class:`SANEConfig` fields replacing the YAML's (ablations).
        token_overrides: :class:`Tokenizer` fields replacing the YAML's (e.g. ``n_points``).
        augment: apply the YAML's ``augment`` block while training (True) or not (False).
    """

    def __init__(
        self,
        point_seed: int = 0,
        seed: int = 0,
        overrides: Mapping[str, Any] | None = None,
        token_overrides: Mapping[str, Any] | None = None,
        augment: bool = True,
    ) -> None:
        cfg = load_config("model/sane").model
        self.tokenizer = dataclasses.replace(
            Tokenizer.from_config(cfg.tokens), **dict(token_overrides or {})
        )
        net = SANEConfig.from_config(cfg.net)
        with torch.random.fork_rng(devices=[]):  # the initialisation follows ``seed`` only
            torch.manual_seed(seed)
            self.autoencoder = dataclasses.replace(net, **dict(overrides or {})).build()
        self.module = nn.ModuleDict(
            {"encoder": self.autoencoder.encoder, "pool": self.autoencoder.pool}
        )
        self.embedding_dim = self.autoencoder.embedding_dim
        self.points = self.tokenizer.sample(torch.Generator().manual_seed(point_seed))[0]
        self.generator = torch.Generator().manual_seed(seed)
        aug = cfg.augment
        self.permute_mlp = bool(augment and aug.permute_mlp)
        self.noise_std = float(aug.noise_std) if augment else 0.0

    def prepare(self, fields: Sequence[RadianceField]) -> list[RadianceField]:
        """Fields are tokenised per batch (the points change while training)."""
        return list(fields)

    def tokens(self, items: Sequence[RadianceField]) -> TokenSequence:
        """The collated tokens of one batch: fresh points and augmentations while training
        (when ``resample`` / ``augment`` are on), the fixed points otherwise."""
        if not self.module.training:
            return collate([self.tokenizer(f, self.points) for f in items])
        pts = self.tokenizer.sample(self.generator)[0] if self.tokenizer.resample else self.points
        gen = self.generator
        if self.permute_mlp:
            items = [permute_hidden_neurons(f, gen) for f in items]
        seqs = [self.tokenizer(f, pts) for f in items]
        if self.noise_std > 0:
            seqs = [multiplicative_noise(s, self.noise_std, gen) for s in seqs]
        return collate(seqs)

    def embed(self, items: Sequence[RadianceField]) -> Tensor:
        """``[B, d_latent]`` embeddings of fields (:meth:`tokens`, then ``embed``)."""
        return self.autoencoder.embed(self.tokens(items))
