"""`TrainModule`: an encoder (GMN or SANE) with everything trained beside it.

One ``nn.Module`` holds, for either encoder:

* ``encoder`` — :class:`~graphnerf.models.GMNEncoder` (parameter graphs -> ``[B, 1024]``) or
  :class:`~graphnerf.models.SANEAutoencoder` (token sequences -> pooled ``[B, d_latent]``, with its
  own token decoder, projector and [POS] rotation head);
* ``projection`` — the contrastive projection (:class:`ProjectionHead`; SANE: its own
  ``encoder.projector``);
* ``rotation`` — the relative-rotation head (:class:`PairRotationHead` over two embeddings; SANE:
  ``encoder.rotation_head`` over the two views' [POS] latents);
* ``decoder`` — the nf2vec :class:`~graphnerf.models.FieldDecoder` of the rendering loss;
* ``siglip`` — the learnable temperature and bias of SigLIP (when the contrastive loss is
  SigLIP).

``forward(batch)`` computes the weighted loss terms of one training batch (see
:mod:`graphnerf.train.data` for the batch layout); the whole computation, including the
cross-process gather of the contrastive loss, is inside ``forward`` so that DDP sees every
parameter's gradient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..losses import latent_l2_loss, ntxent_loss, quaternion_geodesic_loss
from ..losses.contrastive import SigLIPLoss
from ..models import DecoderConfig, GMNConfig, GMNEncoder, SANEAutoencoder, SANEConfig
from ..tokens import Tokenizer
from .heads import EmbeddingCentering, PairRotationHead, ProjectionHead
from .teacher import cached_rendering_loss, render_decoder

__all__ = ["LOSS_TERMS", "MODEL_NAMES", "TrainModule", "resolve_heads"]

MODEL_NAMES = ("gmn", "sane")
#: Loss terms a loss preset may weight (configs/loss/*.yaml, key ``weights``).
LOSS_TERMS = ("render", "contrastive", "rotation", "latent_l2", "token_recon")

_HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "center": {"momentum": 0.9},
    "projection": {"dims": [256, 128]},
    "rotation": {"hidden": 256, "n_layers": 2},
    "contrastive": {"kind": None, "tau": 0.1, "t_init": math.log(10.0), "b_init": -10.0},
}


def _plain(x: Any) -> Any:
    """Plain Python containers (lists, dicts, scalars) of an OmegaConf node or a mapping."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(x, DictConfig | ListConfig):
            return OmegaConf.to_container(x, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def embedding_dim_of(name: str, model_cfg: Mapping[str, Any]) -> int:
    if name == "gmn":
        return GMNConfig.from_dict(model_cfg).embedding_dim
    return SANEConfig.from_config(model_cfg["net"]).d_latent


def resolve_heads(
    name: str, model_cfg: Mapping[str, Any], heads_cfg: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The complete heads config: defaults filled in, the decoder's ``embed_dim`` set to the
    encoder's embedding size, the contrastive kind defaulting to SigLIP (GMN) / NT-Xent (SANE)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    given = _plain(heads_cfg) if heads_cfg is not None else {}
    unknown = sorted(set(given) - {*_HEAD_DEFAULTS, "decoder"})
    if unknown:
        raise ValueError(
            f"unknown heads key(s) {unknown}; expected some of {sorted({*_HEAD_DEFAULTS, 'decoder'})}"
        )
    out: dict[str, Any] = {}
    for key, default in _HEAD_DEFAULTS.items():
        part = dict(given.get(key) or {})
        bad = sorted(set(part) - set(default))
        if bad:
            raise ValueError(
                f"unknown heads.{key} key(s) {bad}; expected some of {sorted(default)}"
            )
        out[key] = {**default, **part}
    kind = out["contrastive"]["kind"] or ("siglip" if name == "gmn" else "ntxent")
    if kind not in ("siglip", "ntxent"):
        raise ValueError(f"heads.contrastive.kind must be siglip or ntxent, got {kind!r}")
    out["contrastive"]["kind"] = kind
    dec = dict(given.get("decoder") or {})
    dec["embed_dim"] = embedding_dim_of(name, model_cfg)
    dec_cfg = DecoderConfig.from_config(dec)
    out["decoder"] = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(dec_cfg).items()}
    return out


class TrainModule(nn.Module):
    """Encoder + projection + rotation head + rendering decoder (+ SigLIP parameters).

    Args:
        name: ``"gmn"`` or ``"sane"``.
        model_cfg: ``configs/model/<name>.yaml`` as a plain mapping (GMN: the flat config; SANE:
            ``tokens``, ``net``, ``augment``, ``loss_weights``).
        heads_cfg: see :func:`resolve_heads` (None: defaults).
    """

    def __init__(
        self, name: str, model_cfg: Mapping[str, Any], heads_cfg: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.model_cfg = _plain(model_cfg)
        self.heads_cfg = resolve_heads(name, self.model_cfg, heads_cfg)
        h = self.heads_cfg
        self.tokenizer: Tokenizer | None = None
        if name == "gmn":
            cfg = GMNConfig.from_dict(self.model_cfg)
            self.encoder: nn.Module = GMNEncoder(cfg)
            self.embedding_dim = cfg.embedding_dim
            self.projection: nn.Module | None = ProjectionHead(
                self.embedding_dim, h["projection"]["dims"]
            )
            self.rotation: nn.Module | None = PairRotationHead(
                self.embedding_dim, h["rotation"]["hidden"], h["rotation"]["n_layers"]
            )
            self.center: nn.Module | None = EmbeddingCentering(
                self.embedding_dim, h["center"]["momentum"]
            )
        else:
            net = SANEConfig.from_config(self.model_cfg["net"])
            self.encoder = SANEAutoencoder(net)
            self.tokenizer = Tokenizer.from_config(self.model_cfg["tokens"])
            self.embedding_dim = net.d_latent
            self.projection = None  # SANEAutoencoder.projector
            self.rotation = None  # SANEAutoencoder.rotation_head
            self.center = None
        self.decoder = DecoderConfig.from_config(h["decoder"]).build()
        c = h["contrastive"]
        self.siglip = SigLIPLoss(c["t_init"], c["b_init"]) if c["kind"] == "siglip" else None
        # set by the trainer: weights of the loss terms and rendering settings
        self.loss_weights: dict[str, float] = {"render": 1.0}
        self.render_cfg: dict[str, Any] = {}
        self.gather = True  # gather contrastive rows over DDP processes (off for validation)

    # ------------------------------------------------------------------ encoding
    def encode(
        self, inputs: Any, generator: torch.Generator | None = None, target: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Embeddings of a model input: a PyG ``Batch`` (GMN) or a batched ``TokenSequence``
        (SANE). Returns ``embedding [B, D]``, ``projection [B, P]`` and, for SANE, ``z``,
        ``z_pos`` and ``loss_recon`` (masked token reconstruction; masking only in training)."""
        if self.name == "gmn":
            z = self.encoder(inputs)
            zc = self.center(z)
            return {"embedding": z, "centered": zc, "projection": self.projection(zc)}
        return self.encoder(inputs, target=target, generator=generator)

    def embed(self, inputs: Any) -> Tensor:
        """``[B, D]`` embeddings (no masking, no projection)."""
        if self.name == "gmn":
            return self.encoder(inputs)
        return self.encoder.embed(inputs)

    def predict_rotation(self, out: Mapping[str, Tensor], a: Tensor, b: Tensor) -> Tensor:
        """Relative rotation ``q_b q_a^-1`` ``[P, 4]`` of the pairs of rows ``(a[p], b[p])``."""
        if self.name == "gmn":
            z = out["centered"] if "centered" in out else self.center(out["embedding"])
            return self.rotation(z.index_select(0, a), z.index_select(0, b))
        zp = out["z_pos"]
        return self.encoder.predict_rotation(zp.index_select(0, a), zp.index_select(0, b))

    # ------------------------------------------------------------------ losses
    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Loss terms of one batch: ``{term: value}`` for every weighted term, and ``total``.

        ``batch`` keys (:func:`graphnerf.train.data.collate_step`): ``inputs`` (model input of
        the ``M`` NeRFs), ``labels [M]`` object ids, ``view [M]`` view index within its object,
        ``pairs [P, 2]`` rows of the rotation pairs, ``q_rel [P, 4]``, ``rays`` (``origins``,
        ``directions``, ``rgb`` ``[M, R, 3]``, ``opacity [M, R]``), ``render_seeds [M]``,
        ``mask_seed`` (SANE token masking).
        """
        w = self.loss_weights
        g = None
        if self.name == "sane":
            g = torch.Generator().manual_seed(int(batch["mask_seed"]))
        out = self.encode(batch["inputs"], generator=g, target=batch.get("target"))
        terms: dict[str, Tensor] = {}
        if w.get("contrastive", 0.0):
            terms["contrastive"] = self._contrastive(out["projection"], batch)
        if w.get("rotation", 0.0):
            pairs = batch["pairs"]
            q = self.predict_rotation(out, pairs[:, 0], pairs[:, 1])
            terms["rotation"] = quaternion_geodesic_loss(q, batch["q_rel"])
        if w.get("render", 0.0):
            terms["render"] = self._render(out["embedding"], batch)
        if w.get("latent_l2", 0.0):
            terms["latent_l2"] = latent_l2_loss(out["z"] if "z" in out else out["embedding"])
        if w.get("token_recon", 0.0):
            if "loss_recon" not in out:
                raise ValueError(
                    "loss term token_recon needs model=sane (the GMN has no token decoder)"
                )
            terms["token_recon"] = out["loss_recon"]
        total = sum(w[k] * v for k, v in terms.items())
        terms["total"] = total if isinstance(total, Tensor) else out["embedding"].sum() * 0.0
        return terms

    def _contrastive(self, proj: Tensor, batch: Mapping[str, Any]) -> Tensor:
        labels, view = batch["labels"], batch["view"]
        if (
            self.gather
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            from torch.distributed.nn.functional import all_gather

            proj = torch.cat(all_gather(proj))  # gradients flow back to every rank's rows
            labels = _gather_plain(labels)
            view = _gather_plain(view)
        if self.siglip is not None:
            first = view == 0
            return self.siglip(proj[first], proj[~first], labels[first], labels[~first])
        return ntxent_loss(proj, labels, tau=float(self.heads_cfg["contrastive"]["tau"]))

    def _render(self, z: Tensor, batch: Mapping[str, Any]) -> Tensor:
        r = self.render_cfg
        rays = batch["rays"]
        gens = None
        if r.get("perturb", True):
            gens = [
                torch.Generator(device=z.device).manual_seed(int(s)) for s in batch["render_seeds"]
            ]
        out = render_decoder(
            self.decoder,
            z,
            rays["origins"],
            rays["directions"],
            n_samples=int(r.get("n_samples", 32)),
            perturb=bool(r.get("perturb", True)),
            generators=gens,
            background=float(r.get("background", 1.0)),
        )
        return cached_rendering_loss(
            out["rgb"],
            rays["rgb"],
            rays["opacity"],
            fg_weight=float(r.get("fg_weight", 0.8)),
            bg_weight=float(r.get("bg_weight", 0.2)),
            fg_threshold=float(r.get("fg_threshold", 0.5)),
            beta=float(r.get("beta", 1.0)),
        )


def _gather_plain(t: Tensor) -> Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def module_signature(name: str, model_cfg: Mapping[str, Any], heads: Mapping[str, Any]) -> dict:
    """What must match for a checkpoint to resume into a run: model name, model and heads config."""
    return {"name": name, "config": _plain(model_cfg), "heads": _plain(heads)}


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def as_list(x: Sequence[Any] | None) -> list[Any] | None:
    return None if x is None else list(x)
