"""Overrides that make `graphnerf train` tiny, shared by the tests that train (test_train,
test_pretrained, test_demo): a 1-block GMN of width 16 and small heads, decoder and renders."""

TINY_GMN = [
    "model.hidden=16",
    "model.edge_hidden=8",
    "model.n_blocks=1",
    "model.embedding_dim=32",
]
TINY_HEADS = [
    "heads.projection.dims=[32,16]",
    "heads.rotation.hidden=32",
    "decoder.net.hidden_dim=32",
    "decoder.net.n_frequencies=4",
    "render.teacher.n_rays=64",
    "render.teacher.n_samples=16",
    "render.rays_per_field=16",
    "render.n_samples=8",
]
