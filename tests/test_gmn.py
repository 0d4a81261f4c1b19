"""GMNEncoder: the symmetries of parameter graphs are symmetries of the embedding.

Every invariance test also shows that it *can* fail: next to the invariant embedding it checks a
deliberately non-invariant probe (a node's or an edge's state picked by its index, a mean over
the whole batch) and asserts that the probe does move under the same transformation.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch_geometric.data import Batch, Data
from torch_geometric.utils import scatter

from graphnerf.config import CONFIG_DIR, load_config
from graphnerf.fields import HashGridSpec, MLPSpec, TriplaneSpec, build_field
from graphnerf.graph import EdgeType, NodeType, to_graph
from graphnerf.graph.schema import X_COLUMNS
from graphnerf.models import GMNConfig, GMNEncoder, edge_ops
from graphnerf.models.edge_ops import (
    EdgeLift,
    EdgeLiftFiLM,
    EdgeMLP,
    EdgePool,
    Incidence,
    unique_rows,
)

# The equation and symmetry tests need blocks that compute something: a trained encoder's are
# not the identity, which the default residual_init="zero" makes them at initialisation
# (test_zero_residual_init_starts_as_the_local_model covers the default).
SMALL = GMNConfig(hidden=32, edge_hidden=16, n_blocks=2, embedding_dim=64, residual_init="scaled")

SPECS = {
    "mlp": MLPSpec(n_frequencies=2, n_neurons=16),
    "triplane": TriplaneSpec(resolution=4, channels=4, n_frequencies=2, n_neurons=16),
    "hash": HashGridSpec(
        n_levels=2, log2_table_size=8, base_resolution=4, max_resolution=8, n_neurons=16
    ),
}
NODE_ATTRS = ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x")


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def assert_same(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    assert a.shape == b.shape
    assert rel_diff(a, b) <= rtol, f"relative difference {rel_diff(a, b):.2e} > {rtol:.0e}"


def assert_moved(a: torch.Tensor, b: torch.Tensor) -> None:
    """The non-invariant probe must visibly change (so the invariance test can fail)."""
    assert rel_diff(a, b) > 1e-3, "the probe did not move: the test could not detect a bug"


def model(cfg: GMNConfig = SMALL, seed: int = 0) -> GMNEncoder:
    torch.manual_seed(seed)
    return GMNEncoder(cfg).eval()


def graph(name: str, seed: int = 0) -> Data:
    return to_graph(build_field(SPECS[name], seed=seed))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The graphs here are tiny: one thread avoids OpenMP overhead on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def enc() -> GMNEncoder:
    return model()


def first_hidden_node(g: Data) -> int:
    return int((g.node_type == NodeType.HIDDEN).nonzero()[0])


# ---------------------------------------------------------------- the equations


def reference_embedding(m: GMNEncoder, data: Batch, blocks: bool = True) -> torch.Tensor:
    """The equations of graphnerf.models.gmn written out plainly: every node state kept and
    projected in every block, the edge MLP on the gathered endpoint projections, plain scatter
    means (the model computes the same with static projections, fused products, PyG hooks).
    ``blocks=False``: the lifting and the readout alone (no message passing)."""
    keep = torch.ones_like(data.edge_type, dtype=torch.bool)
    if m.cfg.drop_pad_weights:  # the never-trained weights into padded outputs are left out
        keep = data.edge_type != EdgeType.PAD_WEIGHT
    src, dst = data.edge_index[:, keep]
    etype, value = data.edge_type[keep], data.edge_attr[keep, 0]
    n, b = data.num_nodes, data.num_graphs
    edge_graph = data.batch[src]
    e = m.edge_lift(value, etype, edge_graph, b)
    h = m.node_lift(data.x, data.node_pos, data.node_type)
    if m.edge_film is not None:  # FiLM by the source's lifted state
        gamma, beta = m.edge_film(h)[src].split(e.size(1), dim=1)
        e = e * (1 + gamma) + beta
    e = e + m.edge_type_embedding(etype)
    recv = torch.bincount(dst, minlength=n) > 0
    for blk in m.blocks if blocks else []:
        hn = blk.edge_norm_h(h)
        pre = blk.edge_src(hn)[src] + blk.edge_dst(hn)[dst] + blk.edge_self(blk.edge_norm_e(e))
        e = e + blk.edge_out(F.silu(pre))
        msg = blk.msg_norm(scatter(e, dst, dim=0, dim_size=n, reduce="mean"))
        h_new = h + blk.node_mlp(torch.cat([blk.node_norm(h), msg], dim=-1))
        h = torch.where(recv[:, None], h_new, h)
    ro = m.readout
    zn = scatter(ro.node_phi(h[recv]), data.batch[recv], dim=0, dim_size=b, reduce="mean")
    if m.cfg.edge_readout == "edge":
        ze = scatter(ro.edge_phi(e), edge_graph, dim=0, dim_size=b, reduce="mean")
    else:  # per graph, the mean over its edge types of each type's mean, one graph at a time
        phi = ro.edge_phi(e)
        ze = torch.stack(
            [
                torch.stack(
                    [
                        phi[(edge_graph == g) & (etype == t)].mean(0)
                        for t in etype[edge_graph == g].unique()
                    ]
                ).mean(0)
                for g in range(b)
            ]
        )
    return ro.rho(torch.cat([zn, ze], dim=-1))


@pytest.mark.parametrize("edge_readout", ["type", "edge"])
def test_matches_reference_equations(edge_readout: str) -> None:
    m = model(dataclasses.replace(SMALL, edge_readout=edge_readout))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # LayerNorms away from their identity initialisation
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(0.5 + torch.rand(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.2 * torch.randn(mod.bias.shape, generator=gen))
    batch = Batch.from_data_list([graph("mlp", 0), graph("hash", 1), graph("triplane", 2)])
    with torch.no_grad():
        assert_same(m(batch), reference_embedding(m, batch), rtol=2e-5)


def test_zero_residual_init_starts_as_the_local_model() -> None:
    """Default ``residual_init="zero"``: untrained, the encoder is its lifting and readout alone
    (a DeepSets over the FiLM-lifted edges); two Adam steps later every parameter gets
    gradients and the blocks pass messages."""
    cfg = dataclasses.replace(SMALL, residual_init="zero")
    assert GMNConfig().residual_init == "zero"
    m = model(cfg).train()
    batch = mixed_batch()
    with torch.no_grad():
        local = reference_embedding(m, batch, blocks=False)
        assert_same(m(batch), local, rtol=2e-5)
        scaled = model(SMALL)  # the same seed with "scaled" branches: the blocks move it
        assert_moved(scaled(batch), reference_embedding(scaled, batch, blocks=False))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(2):  # step 1 moves the branches' last layers, step 2 everything before them
        _, grads = loss_and_grads(m, batch)
        opt.step()
    assert_every_parameter_has_gradient(m, grads)
    with torch.no_grad():
        assert_moved(m(batch), reference_embedding(m, batch, blocks=False))


# ---------------------------------------------------------------- hidden-neuron permutations


def permute_hidden(field, layer: int, perm: torch.Tensor):
    """Permute the neurons of hidden layer ``layer`` (1-based): rows of W_{layer-1}, columns of
    W_layer (``weights[i]`` maps layer i to layer i + 1). The field computes the same function."""
    w = field.mlp.weights
    with torch.no_grad():
        w[layer - 1].copy_(w[layer - 1][perm])
        w[layer].copy_(w[layer][:, perm])
    return field


@pytest.mark.parametrize("name", ["mlp", "triplane", "hash", "zoo_mlp"])
def test_hidden_neuron_permutation_invariance(enc: GMNEncoder, name: str) -> None:
    spec = "mlp" if name == "zoo_mlp" else SPECS[name]
    field = build_field(spec, seed=1)
    g = to_graph(field)
    x = torch.rand(64, 3) * 1.2 - 0.6
    sigma, rgb = field(x)
    gen = torch.Generator().manual_seed(0)
    for layer in range(1, field.spec.n_hidden_layers + 1):
        perm = torch.randperm(field.spec.n_neurons, generator=gen)
        permute_hidden(field, layer, perm)
    # same function, different graph
    sigma2, rgb2 = field(x)
    torch.testing.assert_close(sigma2, sigma, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rgb2, rgb, rtol=1e-5, atol=1e-6)
    gp = to_graph(field)
    assert not torch.equal(gp.edge_attr, g.edge_attr)
    with torch.no_grad():
        assert_same(enc(gp), enc(g))
        # a readout taking the first hidden neuron's state, or the state of the first edge into
        # it, is not invariant
        k = first_hidden_node(g)
        into_k = int((g.edge_index[1] == k).nonzero()[0])
        sp, s0 = enc.states(gp), enc.states(g)
        assert_moved(sp.h[k], s0.h[k])
        assert_moved(sp.e[into_k], s0.e[into_k])


def permute_grid_features(field, perm: torch.Tensor):
    """Permute the channels of a tri-plane (all three planes) or the features of every hash level,
    with the matching input columns of the first weight matrix: the same function."""
    spec, w0 = field.spec, field.mlp.weights[0]
    with torch.no_grad():
        if spec.family == "triplane":
            field.triplane.copy_(field.triplane[..., perm])
            cols = 6 * spec.n_frequencies + torch.arange(spec.channels)
            w0[:, cols] = w0[:, cols[perm]]
        else:
            field.table.copy_(field.table[:, perm])
            n_feat = spec.n_features_per_level
            for level in range(spec.n_levels):
                cols = level * n_feat + torch.arange(n_feat)
                w0[:, cols] = w0[:, cols[perm]]
    return field


@pytest.mark.parametrize("name", ["triplane", "hash"])
def test_grid_feature_permutation_invariance(name: str) -> None:
    """Tri-plane channels and hash features within a level are permutable too; neither the
    schema nor the encoder gives them an order."""
    m = model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # weights larger than at initialisation: a less smooth network
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                w = torch.randn(mod.weight.shape, generator=gen)
                mod.weight.copy_(2 * w / mod.in_features**0.5)
    field = build_field(SPECS[name], seed=2)
    g = to_graph(field)
    x = torch.rand(64, 3) * 1.2 - 0.6
    sigma, rgb = field(x)
    n = field.spec.channels if name == "triplane" else field.spec.n_features_per_level
    perm = torch.arange(n).roll(1)
    gp = to_graph(permute_grid_features(field, perm))
    sigma2, rgb2 = field(x)
    torch.testing.assert_close(sigma2, sigma, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rgb2, rgb, rtol=1e-5, atol=1e-6)
    assert not torch.equal(gp.edge_attr, g.edge_attr)
    with torch.no_grad():
        invariant = rel_diff(m(gp), m(g))
        assert invariant <= 1e-5
        # reading the first channel / feature node's state is not invariant
        k = int((g.node_type == NodeType.GRID_FEATURE).nonzero()[0])
        assert_moved(m.states(gp).h[k], m.states(g).h[k])
        # the schema itself gives these nodes no order (x column "order" = -1, schema v3)
        grid = g.node_type == NodeType.GRID_FEATURE
        assert bool((g.x[grid, X_COLUMNS.index("order")] == -1).all())


def test_hidden_neurons_carry_no_index_information() -> None:
    """Within a hidden layer every node attribute is identical: nothing encodes the index."""
    for name in SPECS:
        g = graph(name)
        hidden = g.node_type == NodeType.HIDDEN
        assert bool((g.node_order[hidden] == -1).all())
        for layer in g.node_layer[hidden].unique():
            rows = hidden & (g.node_layer == layer)
            for attr in NODE_ATTRS:
                t = getattr(g, attr)[rows]
                assert bool((t == t[:1]).all()), f"{name}: {attr} differs among hidden neurons"


# ---------------------------------------------------------------- edge and node orders


@pytest.mark.parametrize("name", list(SPECS))
def test_edge_order_invariance(enc: GMNEncoder, name: str) -> None:
    g = graph(name)
    perm = torch.randperm(g.num_edges, generator=torch.Generator().manual_seed(1))
    gp = g.clone()
    gp.edge_index = g.edge_index[:, perm]
    gp.edge_attr = g.edge_attr[perm]
    gp.edge_type = g.edge_type[perm]
    with torch.no_grad():
        assert_same(enc(gp), enc(g))
        # reading the first listed edge's state is not invariant
        assert_moved(enc.states(gp).e[0], enc.states(g).e[0])


@pytest.mark.parametrize("name", list(SPECS))
def test_node_renumbering_invariance(enc: GMNEncoder, name: str) -> None:
    g = graph(name)
    n = g.num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))  # new node i = old perm[i]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    gp = g.clone()
    for attr in NODE_ATTRS:
        setattr(gp, attr, getattr(g, attr)[perm])
    gp.edge_index = inv[g.edge_index]
    with torch.no_grad():
        assert_same(enc(gp), enc(g))
        # reading node 17's state is not invariant
        assert_moved(enc.states(gp).h[17], enc.states(g).h[17])


# ---------------------------------------------------------------- batching


def test_batching_invariance(enc: GMNEncoder) -> None:
    a, b, c = graph("hash", 3), graph("mlp", 4), graph("triplane", 5)
    with torch.no_grad():
        za = enc(Batch.from_data_list([a]))[0]
        assert_same(enc(a)[0], za)  # a lone Data is one graph
        for order, pos in (([a, b, c], 0), ([b, a, c], 1), ([b, c, a], 2)):
            assert_same(enc(Batch.from_data_list(order))[pos], za)
        # a readout that pools over the whole batch (ignoring the batch vector) is not invariant
        alone = enc.states(Batch.from_data_list([a])).h.mean(0)
        batched = enc.states(Batch.from_data_list([a, b, c])).h.mean(0)
        assert_moved(batched, alone)


def test_output_shape_mixed_batch(enc: GMNEncoder) -> None:
    gs = [graph("mlp", 0), graph("hash", 1), graph("triplane", 2), graph("mlp", 3)]
    with torch.no_grad():
        z = enc(Batch.from_data_list(gs))
    assert z.shape == (4, SMALL.embedding_dim)
    assert z.dtype == torch.float32
    assert bool(torch.isfinite(z).all())
    # different NeRFs get different embeddings
    assert rel_diff(z[0], z[3]) > 1e-4


# ---------------------------------------------------------------- training paths


def mixed_batch() -> Batch:
    return Batch.from_data_list([graph("mlp", 0), graph("hash", 1), graph("triplane", 2)])


def loss_and_grads(m: GMNEncoder, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    m.zero_grad(set_to_none=True)
    z = m(batch)
    (z.square().mean() + z[:, 0].sum()).backward()
    return z.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}


def assert_every_parameter_has_gradient(m: GMNEncoder, grads: dict[str, torch.Tensor]) -> None:
    for name, _ in m.named_parameters():
        assert name in grads, f"{name} got no gradient"
        assert bool(grads[name].abs().sum() > 0), f"{name} got an all-zero gradient"


@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_reach_every_parameter(reverse: bool) -> None:
    m = model(dataclasses.replace(SMALL, reverse_edges=reverse)).train()
    _, grads = loss_and_grads(m, mixed_batch())
    assert_every_parameter_has_gradient(m, grads)
    torch.optim.AdamW(m.parameters(), lr=1e-3).step()


@pytest.mark.parametrize(
    "changes",
    [{"edge_chunk": 500}, {"checkpoint": True}, {"edge_chunk": 500, "checkpoint": True}],
    ids=["edge_chunk", "checkpoint", "both"],
)
def test_memory_options_match_plain(changes: dict) -> None:
    batch = mixed_batch()
    ref = model().train()
    z0, g0 = loss_and_grads(ref, batch)
    m = model(dataclasses.replace(SMALL, **changes)).train()
    m.load_state_dict(ref.state_dict())
    assert batch.num_edges > 3 * 500  # the chunked path really runs in several chunks
    z1, g1 = loss_and_grads(m, batch)
    assert_same(z1, z0)
    assert g1.keys() == g0.keys()
    for k in g0:
        assert_same(g1[k], g0[k], rtol=1e-4)
    with torch.no_grad():  # inference path (chunks without checkpointing)
        assert_same(m(batch), z0)


def test_reverse_edges_runs_and_stays_invariant() -> None:
    m = model(dataclasses.replace(SMALL, reverse_edges=True))
    g = graph("hash")
    perm = torch.randperm(g.num_edges, generator=torch.Generator().manual_seed(3))
    gp = g.clone()
    gp.edge_index, gp.edge_attr, gp.edge_type = (
        g.edge_index[:, perm],
        g.edge_attr[perm],
        g.edge_type[perm],
    )
    with torch.no_grad():
        z = m(Batch.from_data_list([g, graph("mlp")]))
        assert z.shape == (2, SMALL.embedding_dim) and bool(torch.isfinite(z).all())
        assert_same(m(gp), z[:1])
        n_pad = int((g.edge_type == EdgeType.PAD_WEIGHT).sum())  # dropped by default
        assert m.states(g).e.shape[0] == 2 * (g.num_edges - n_pad)


def test_bf16_close_to_fp32() -> None:
    batch = mixed_batch()
    ref = model()
    m = model(dataclasses.replace(SMALL, bf16=True))
    m.load_state_dict(ref.state_dict())
    with torch.no_grad():
        z32, z16 = ref(batch), m(batch)
    assert z16.dtype == torch.float32
    assert rel_diff(z16, z32) < 5e-2
    cos = torch.nn.functional.cosine_similarity(z16, z32, dim=-1)
    assert bool((cos > 0.99).all())
    # and it trains
    m.train()
    m(batch).square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())


# ---------------------------------------------------------------- config and errors


def test_config_defaults_equal_yaml() -> None:
    yaml_cfg = OmegaConf.load(CONFIG_DIR / "model" / "gmn.yaml")
    assert GMNConfig.from_omegaconf(yaml_cfg) == GMNConfig()
    assert GMNConfig.from_omegaconf(load_config("model/gmn").model) == GMNConfig()
    d = GMNConfig().to_dict()
    assert set(d) == set(yaml_cfg) - {"name"}
    assert (GMNConfig().hidden, GMNConfig().n_blocks, GMNConfig().embedding_dim) == (128, 1, 1024)
    assert GMNConfig().edge_hidden == 32
    cfg = GMNConfig.from_dict({"hidden": 8, "aggr": ["mean", "max"]})
    assert cfg.aggr == ("mean", "max") and GMNConfig.from_dict(cfg.to_dict()) == cfg


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown GMNConfig key"):
        GMNConfig.from_dict({"hiden": 8})
    with pytest.raises(ValueError, match="edge_chunk"):
        GMNConfig(edge_chunk=0)
    with pytest.raises(ValueError, match="aggr"):
        GMNConfig(aggr="median")
    with pytest.raises(ValueError, match="residual_init"):
        GMNConfig(residual_init="ones")
    with pytest.raises(ValueError, match="not 'gmn'"):
        GMNConfig.from_dict({"name": "sane"})


def test_multi_aggregation_runs() -> None:
    m = model(dataclasses.replace(SMALL, aggr=("mean", "max")))
    with torch.no_grad():
        assert m(mixed_batch()).shape == (3, SMALL.embedding_dim)


def test_missing_attribute_is_a_clear_error(enc: GMNEncoder) -> None:
    g = graph("mlp")
    del g.node_pos
    with pytest.raises(ValueError, match="node_pos"):
        enc(g)


# ---------------------------------------------------------------- fused edge functions


@pytest.fixture()
def small_chunks(monkeypatch):
    """Chunks of 7 rows, so that the chunked loops run over several (and a partial) chunk."""
    monkeypatch.setattr(edge_ops, "CHUNK_ROWS", 7)


def test_incidence_sum_mean_gather() -> None:
    gen = torch.Generator().manual_seed(0)
    index = torch.randint(0, 5, (40,), generator=gen)
    index[index == 3] = 4  # row 3 has no edges
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    inc = Incidence(index, 6)
    torch.testing.assert_close(inc.sum(x), scatter(x, index, 0, dim_size=6, reduce="sum"))
    torch.testing.assert_close(inc.mean(x), scatter(x, index, 0, dim_size=6, reduce="mean"))
    table = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(inc.gather(table), table[index])
    assert torch.autograd.gradcheck(inc.sum, (x,))
    assert torch.autograd.gradcheck(inc.gather, (table,))
    assert inc.reduce(x.detach().to(torch.bfloat16)).dtype == torch.bfloat16


def test_unique_rows_is_exact() -> None:
    x = torch.tensor([[0.0, 1.0], [0.5, 1.0], [0.0, 1.0], [0.5, 2.0], [0.5, 1.0]])
    t = torch.tensor([1, 1, 1, 1, 2])
    first, inverse = unique_rows([x[:, 0], x[:, 1], t])
    assert first.numel() == 4
    rows = torch.cat([x, t[:, None].float()], 1)
    torch.testing.assert_close(rows[first][inverse], rows)
    assert bool((first[inverse[first]] == first).all()) and int(first.min()) == 0


def plain_edge_mlp(e, a, b, c, w, src, dst, eps=1e-5):
    n = F.layer_norm(e, e.shape[-1:], eps=eps)
    return e + F.silu(a[src] + b[dst] + n @ c.t()) @ w.t()


@pytest.mark.parametrize("with_incidence", [True, False])
def test_edge_mlp_matches_formula_and_gradcheck(small_chunks, with_incidence: bool) -> None:
    gen = torch.Generator().manual_seed(1)

    def t(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    e, a, b, c, w = t(23, 4), t(5, 4), t(3, 4), t(4, 4), t(4, 4)
    src = torch.randint(0, 5, (23,), generator=gen)
    dst = torch.randint(0, 3, (23,), generator=gen)
    incs = (Incidence(src, 5), Incidence(dst, 3)) if with_incidence else (None, None)

    def fused(e, a, b, c, w):
        return EdgeMLP.apply(e, a, b, c, w, src, dst, *incs, 1e-5)

    torch.testing.assert_close(fused(e, a, b, c, w), plain_edge_mlp(e, a, b, c, w, src, dst))
    assert torch.autograd.gradcheck(fused, (e, a, b, c, w))


def test_edge_pool_matches_formula_and_gradcheck(small_chunks) -> None:
    gen = torch.Generator().manual_seed(2)
    e = torch.randn(30, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    graph = torch.cat([torch.zeros(12), torch.ones(10), 2 * torch.ones(8)]).long()
    for index, n in ((graph, 4), (torch.randint(0, 100, (30,), generator=gen), 100)):
        inc = Incidence(index, n)  # consecutive groups (one-hot sums), then index_add_

        def fused(e, c, c0, inc=inc):
            return EdgePool.apply(e, c, c0, inc, 1e-5)

        expected = scatter(
            F.silu(F.layer_norm(e, (4,)) @ c.t() + c0), index, 0, dim_size=n, reduce="mean"
        )
        torch.testing.assert_close(fused(e, c, c0), expected)
        assert torch.autograd.gradcheck(fused, (e, c, c0))


def test_edge_lift_matches_features_and_gradcheck(small_chunks) -> None:
    lift = GMNEncoder(SMALL).edge_lift.double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        lift.log_scale.normal_(0.0, 0.3, generator=gen)
    value = torch.randn(25, generator=gen, dtype=torch.float64)
    edge_type = torch.randint(0, lift.n_types, (25,), generator=gen)
    edge_graph = (torch.arange(25) >= 11).long()
    expected = lift.proj(lift.features(value, edge_type, edge_graph, 2))
    torch.testing.assert_close(lift(value, edge_type, edge_graph, 2), expected)
    u, scale = lift.normalised(value, edge_type, edge_graph, 2)
    w, b = lift.proj.weight, lift.proj.bias
    s = lift.log_scale.exp().detach().requires_grad_()

    def fused(s, w, b):
        return EdgeLift.apply(u, scale, edge_type, s, lift.freqs.double(), w, b)

    assert torch.autograd.gradcheck(fused, (s, w, b))


def test_edge_lift_film_matches_formula_and_gradcheck(small_chunks) -> None:
    """The fused lifting + FiLM equals ``proj(lift(v)) * (1 + gamma[src]) + beta[src]`` and
    its hand-written backward passes gradcheck (chunks of 7 rows, see ``small_chunks``)."""
    lift = GMNEncoder(SMALL).edge_lift.double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        lift.log_scale.normal_(0.0, 0.3, generator=gen)
    d = lift.proj.out_features
    value = torch.randn(25, generator=gen, dtype=torch.float64)
    edge_type = torch.randint(0, lift.n_types, (25,), generator=gen)
    edge_graph = (torch.arange(25) >= 11).long()
    film = torch.randn(6, 2 * d, generator=gen, dtype=torch.float64)
    src = torch.randint(0, 6, (25,), generator=gen)
    lin = lift.proj(lift.features(value, edge_type, edge_graph, 2))
    expected = lin * (1 + film[src, :d]) + film[src, d:]
    torch.testing.assert_close(lift(value, edge_type, edge_graph, 2, film, src), expected)
    u, scale = lift.normalised(value, edge_type, edge_graph, 2)
    w, b = lift.proj.weight, lift.proj.bias
    s = lift.log_scale.exp().detach().requires_grad_()
    film = film.requires_grad_()

    def fused(s, w, b, film):
        return EdgeLiftFiLM.apply(u, scale, edge_type, s, lift.freqs.double(), w, b, film, src)

    assert torch.autograd.gradcheck(fused, (s, w, b, film))


# ---------------------------------------------------------------- exact zeros, padded outputs


@pytest.mark.parametrize(
    "spec",
    [
        MLPSpec(n_frequencies=8, n_neurons=16),
        TriplaneSpec(resolution=4, channels=4, n_frequencies=8, n_neurons=16),
    ],
)
def test_band_limited_zeros_do_not_degenerate(spec) -> None:
    """Fitting's band limit zeroes the first-layer columns of high frequencies (37-56 % of the
    weight edges of the zoo's mlp / triplane); imported checkpoints have no exact zeros. Both
    kinds embed to finite, distinct embeddings, and the value normalisation of the zeroed group
    keeps its non-zero values at unit scale (not blown up by the zeros)."""
    from graphnerf.fit import BandLimit

    m = GMNEncoder(GMNConfig())
    band = BandLimit(spec, 2)
    dense = [build_field(spec, seed=s) for s in (0, 1)]
    limited = [build_field(spec, seed=s) for s in (0, 1)]
    for f in limited:
        band.zero_(f.mlp.weights[0])
    graphs = [to_graph(f) for f in dense + limited]
    weight = graphs[2].edge_type == EdgeType.WEIGHT
    zero_share = float((graphs[2].edge_attr[weight] == 0).float().mean())
    assert zero_share > 0.3 and float((graphs[0].edge_attr[weight] == 0).float().mean()) == 0.0
    with torch.no_grad():
        z = m(Batch.from_data_list(graphs))
        g = graphs[2]
        u, _ = m.edge_lift.normalised(
            g.edge_attr[:, 0], g.edge_type, torch.zeros_like(g.edge_type), 1
        )
    assert bool(torch.isfinite(z).all())
    nonzero = u[weight][g.edge_attr[weight, 0] != 0]
    rms = float(nonzero.square().mean().sqrt())
    assert 1.0 < rms <= (1.0 / (1.0 - zero_share)) ** 0.5 + 1e-4  # rms 1 over the whole group
    d = torch.cdist(z, z)
    off = d[~torch.eye(4, dtype=torch.bool)]
    assert float(off.min()) > 1e-3 * float(z.norm(dim=1).mean())
    # two band-limited fields are as distinguishable as two dense ones (within 10x)
    ratio = float(d[2, 3] / d[0, 1])
    assert 0.1 < ratio < 10.0, ratio


def test_pad_weights_are_left_out_by_default() -> None:
    """The never-trained weights into padded outputs do not change the default embedding;
    with ``drop_pad_weights=False`` they do."""
    field = build_field(SPECS["mlp"], seed=0)
    g = to_graph(field)
    pad = g.edge_type == EdgeType.PAD_WEIGHT
    assert int(pad.sum()) > 0
    g2 = g.clone()
    g2.edge_attr = g.edge_attr.clone()
    g2.edge_attr[pad] = torch.randn(int(pad.sum()), 1)
    torch.manual_seed(0)
    m = GMNEncoder(GMNConfig())
    torch.manual_seed(0)
    keep = GMNEncoder(GMNConfig(drop_pad_weights=False))
    with torch.no_grad():
        assert torch.equal(m(g), m(g2))
        assert_moved(keep(g), keep(g2))


# ---------------------------------------------------------------- edge-type balance


def _repeat_edges_of_type(g: Data, edge_type: EdgeType, times: int) -> Data:
    """The graph with every edge of ``edge_type`` listed ``times`` times (same values)."""
    sel = g.edge_type == edge_type
    out = g.clone()
    extra = sel.nonzero().squeeze(1).repeat(times - 1)
    out.edge_index = torch.cat([g.edge_index, g.edge_index[:, extra]], 1)
    out.edge_attr = torch.cat([g.edge_attr, g.edge_attr[extra]])
    out.edge_type = torch.cat([g.edge_type, g.edge_type[extra]])
    return out


def test_edge_kinds_weigh_the_same_whatever_their_count() -> None:
    """With the default type-balanced readout a kind of parameter counts by what its values say,
    not by how many there are: listing every plane edge of a tri-plane 3 times (their targets,
    the channel nodes, receive nothing else, so every mean message is unchanged) leaves the
    embedding as it is. One mean over all edges (``edge_readout="edge"``) moves with the count."""
    g = graph("triplane", 0)
    g3 = _repeat_edges_of_type(g, EdgeType.PLANE, 3)
    n_plane = int((g.edge_type == EdgeType.PLANE).sum())
    assert n_plane > 0 and int((g3.edge_type == EdgeType.PLANE).sum()) == 3 * n_plane
    with torch.no_grad():
        balanced = model(SMALL)
        assert_same(balanced(g3), balanced(g), rtol=1e-5)
        by_edge = model(dataclasses.replace(SMALL, edge_readout="edge"))
        assert_moved(by_edge(g3), by_edge(g))
