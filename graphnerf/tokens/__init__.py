"""SANE tokenizer: grid tokens at sampled points, MLP row-block tokens, [POS] tokens.

See :mod:`graphnerf.tokens.tokenizer` for the layout and :mod:`graphnerf.tokens.augment` for the
training augmentations.
"""

from .augment import jitter_rotation, multiplicative_noise, permute_hidden_neurons
from .tokenizer import (
    GRID,
    MLP,
    PAD,
    POS,
    SAMPLING_MODES,
    Tokenizer,
    TokenSequence,
    collate,
    grid_token_values,
    hash_corner_values,
    mlp_token_count,
    sample_points,
    tokenize_weights,
    triplane_corner_values,
)

__all__ = [
    "GRID",
    "MLP",
    "PAD",
    "POS",
    "SAMPLING_MODES",
    "TokenSequence",
    "Tokenizer",
    "collate",
    "grid_token_values",
    "hash_corner_values",
    "jitter_rotation",
    "mlp_token_count",
    "multiplicative_noise",
    "permute_hidden_neurons",
    "sample_points",
    "tokenize_weights",
    "triplane_corner_values",
]
