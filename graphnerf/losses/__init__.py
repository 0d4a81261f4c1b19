"""Training losses: SigLIP and NT-Xent (contrastive), quaternion geodesic (rotation), latent L2,
and the nf2vec rendering loss (teacher NeRF vs decoder).

Shapes and units are in each docstring; angles are in radians unless a name ends in ``_deg``.
"""

from .contrastive import NTXentLoss, SigLIPLoss, ntxent_loss, siglip_loss
from .latent import latent_l2_loss
from .rendering import random_rays, rendering_loss
from .rotation import quaternion_angle, quaternion_angle_deg, quaternion_geodesic_loss

__all__ = [
    "NTXentLoss",
    "SigLIPLoss",
    "latent_l2_loss",
    "ntxent_loss",
    "quaternion_angle",
    "quaternion_angle_deg",
    "quaternion_geodesic_loss",
    "random_rays",
    "rendering_loss",
    "siglip_loss",
]
