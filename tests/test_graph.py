"""Parameter graphs (docs/graph-schema.md): closed-form sizes, exact round trips, symmetry, schema, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from graphnerf.fields import (
    ZOO,
    HashGridSpec,
    MLPSpec,
    TriplaneSpec,
    build_field,
    triplane_features,
)
from graphnerf.graph import (
    DEFAULT_PROBE_VERTICES,
    X_COLUMNS,
    AddProbeVertices,
    EdgeType,
    GraphError,
    HashedLevelsViaProbes,
    NodeType,
    SequentialSpec,
    from_graph,
    graph_summary,
    load_graph,
    save_graph,
    to_graph,
)

ZOO_NAMES = sorted(ZOO)


# ------------------------------------------------------------------------------ helpers
def pad16(n: int) -> int:
    return -(-n // 16) * 16


def points(n: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g) * 1.4 - 0.7  # inside the default AABB


def same_outputs(f1, f2, x=None) -> bool:
    x = points() if x is None else x
    with torch.no_grad():
        return all(torch.equal(a, b) for a, b in zip(f1(x), f2(x), strict=True))


def same_state(f1, f2) -> bool:
    s1, s2 = f1.state_dict(), f2.state_dict()
    return s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)


def mlp_widths(spec) -> list[int]:
    """Padded MLP widths from the hyperparameters: inputs to a multiple of 16, 4 outputs -> 16."""
    if isinstance(spec, MLPSpec):
        n_in = 6 * spec.n_frequencies
    elif isinstance(spec, TriplaneSpec):
        n_in = 6 * spec.n_frequencies + spec.channels
    else:
        n_in = spec.n_levels * spec.n_features_per_level
    return [pad16(n_in)] + [spec.n_neurons] * spec.n_hidden_layers + [16]


def hash_table_sizes(spec: HashGridSpec) -> list[int]:
    """tcnn: scale_l = 2^(l log2 b) base - 1 (float32), res = ceil(scale) + 1,
    T_l = min(res^3 rounded up to a multiple of 8, 2^log2_table_size)."""
    L = spec.n_levels
    b = (
        math.exp((math.log(spec.max_resolution) - math.log(spec.base_resolution)) / (L - 1))
        if L > 1
        else 1.0
    )
    log2b = np.float32(np.log2(np.float32(b)))
    sizes = []
    for lv in range(L):
        scale = np.float32(
            np.exp2(np.float32(lv) * log2b) * np.float32(spec.base_resolution) - np.float32(1.0)
        )
        res = int(np.ceil(scale)) + 1
        sizes.append(min(-(-(res**3) // 8) * 8, 2**spec.log2_table_size))
    return sizes


def expected_counts(
    spec, probes: int | None = None
) -> tuple[dict[NodeType, int], dict[EdgeType, int]]:
    """Node and edge counts by type, from the spec's hyperparameters alone (``probes``: the
    probe-vertex lattice size, None: to_graph's default for the family)."""
    w = mlp_widths(spec)
    n_weights = sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))
    nodes = {
        NodeType.HIDDEN: spec.n_neurons * spec.n_hidden_layers,
        NodeType.OUTPUT: 4,
        NodeType.PAD_OUTPUT: 12,
    }
    # the 12 padded outputs' weights (never trained) have their own type
    edges = {EdgeType.WEIGHT: n_weights - 12 * w[-2], EdgeType.PAD_WEIGHT: 12 * w[-2]}
    if isinstance(spec, MLPSpec):
        nodes[NodeType.INPUT] = 6 * spec.n_frequencies
        nodes[NodeType.PAD_INPUT] = w[0] - 6 * spec.n_frequencies
    elif isinstance(spec, TriplaneSpec):
        r, c = spec.resolution, spec.channels
        nodes[NodeType.INPUT] = 6 * spec.n_frequencies
        nodes[NodeType.GRID_FEATURE] = c
        nodes[NodeType.PAD_INPUT] = w[0] - 6 * spec.n_frequencies - c
        nodes[NodeType.PLANE_CELL] = 3 * r * r
        edges[EdgeType.PLANE] = 3 * r * r * c
    else:
        lf = spec.n_levels * spec.n_features_per_level
        n_entries = sum(hash_table_sizes(spec))
        nodes[NodeType.GRID_FEATURE] = lf
        nodes[NodeType.PAD_INPUT] = w[0] - lf
        nodes[NodeType.HASH_ENTRY] = n_entries
        edges[EdgeType.HASH] = n_entries * spec.n_features_per_level
        n = DEFAULT_PROBE_VERTICES["hash"] if probes is None else probes
        if n:  # n^3 probe vertices, each joined to the L * F grid-feature nodes
            nodes[NodeType.PROBE_VERTEX] = n**3
            edges[EdgeType.PROBE] = n**3 * lf
    return {t: n for t, n in nodes.items() if n}, edges


def counts_by_type(g: Data) -> tuple[dict[NodeType, int], dict[EdgeType, int]]:
    nt = torch.bincount(g.node_type, minlength=len(NodeType))
    et = torch.bincount(g.edge_type, minlength=len(EdgeType))
    return ({t: int(nt[t]) for t in NodeType if nt[t]}, {t: int(et[t]) for t in EdgeType if et[t]})


def find_node(g: Data, **attrs: int) -> int:
    m = torch.ones(g.num_nodes, dtype=torch.bool)
    for k, v in attrs.items():
        m &= getattr(g, k) == v
    ids = m.nonzero().flatten()
    assert ids.numel() == 1, f"{attrs} matches {ids.numel()} nodes"
    return int(ids[0])


def edge_value(g: Data, src: int, dst: int) -> torch.Tensor:
    m = (g.edge_index[0] == src) & (g.edge_index[1] == dst)
    assert int(m.sum()) == 1
    return g.edge_attr[m][0, 0]


def relabel(g: Data, perm: torch.Tensor) -> Data:
    """The same graph with node ``i`` renamed ``perm[i]``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    h = g.clone()
    for k in ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x"):
        setattr(h, k, getattr(g, k)[inv])
    h.edge_index = perm[g.edge_index]
    return h


# ------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_counts_match_closed_form(name: str) -> None:
    spec = ZOO[name]
    g = to_graph(build_field(spec, seed=0))
    want_nodes, want_edges = expected_counts(spec)
    assert counts_by_type(g) == (want_nodes, want_edges)
    assert g.num_nodes == sum(want_nodes.values())
    assert g.edge_index.shape[1] == sum(want_edges.values())
    assert sum(n for t, n in want_edges.items() if t != EdgeType.PROBE) == spec.n_params


def test_default_hash_counts_by_hand() -> None:
    # base 16, max 128, 4 levels: b = 2, res 16, 32, 64, 128; 16^3 = 4096 = 2^12 (dense), the rest
    # hashed into 4096 entries. MLP 16 -> 64 -> 64 -> 64 -> 16.
    g = to_graph(build_field("hash"), probe_vertices=0)
    assert g.num_nodes == (16 + 3 * 64 + 16) + 4 * 4096
    assert g.edge_index.shape[1] == (16 * 64 + 2 * 64 * 64 + 64 * 16) + 4 * 4096 * 2
    # an 8^3 lattice of probe vertices, each with one edge per (level, feature)
    p = to_graph(build_field("hash"), probe_vertices=8)
    assert p.num_nodes == g.num_nodes + 512
    assert p.edge_index.shape[1] == g.edge_index.shape[1] + 512 * 4 * 2


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_round_trip_bit_identical(name: str) -> None:
    field = build_field(name, seed=3)
    back = from_graph(to_graph(field))
    assert type(back) is type(field) and back.spec == field.spec
    assert same_state(field, back)
    assert same_outputs(field, back)


activations = st.sampled_from(["relu", "sine"])
mlp_specs = st.builds(
    MLPSpec,
    n_hidden_layers=st.integers(1, 3),
    n_neurons=st.integers(1, 24),
    activation=activations,
    n_frequencies=st.integers(1, 6),
)
tri_specs = st.builds(
    TriplaneSpec,
    n_hidden_layers=st.integers(1, 3),
    n_neurons=st.integers(1, 24),
    activation=activations,
    n_frequencies=st.integers(0, 4),
    resolution=st.integers(2, 9),
    channels=st.integers(1, 9),
)


@st.composite
def hash_specs(draw) -> HashGridSpec:
    base = draw(st.integers(2, 12))
    return HashGridSpec(
        n_hidden_layers=draw(st.integers(1, 3)),
        n_neurons=draw(st.integers(1, 24)),
        activation=draw(activations),
        n_levels=draw(st.integers(1, 5)),
        n_features_per_level=draw(st.integers(1, 4)),
        log2_table_size=draw(st.integers(8, 10)),
        base_resolution=base,
        max_resolution=draw(st.integers(base, 40)),
    )


@settings(max_examples=25, deadline=None)
@given(spec=st.one_of(mlp_specs, tri_specs, hash_specs()), seed=st.integers(0, 1000))
def test_random_specs_round_trip_and_counts(spec, seed: int) -> None:
    field = build_field(spec, seed=seed)
    probes = 1 + seed % 4 if isinstance(spec, HashGridSpec) else None
    g = to_graph(field, probe_vertices=probes)
    assert counts_by_type(g) == expected_counts(spec, probes)
    back = from_graph(g)
    assert same_state(field, back)
    assert same_outputs(field, back, points(128, seed))
    deg = torch.bincount(g.edge_index.reshape(-1), minlength=g.num_nodes)
    assert bool((deg >= 1).all())


@pytest.mark.parametrize("name", ["mlp", "triplane_16_resolution", "hash_11_table_size"])
def test_edge_order_and_node_numbering_do_not_matter(name: str) -> None:
    field = build_field(name, seed=1)
    g = to_graph(field)
    gen = torch.Generator().manual_seed(0)
    # shuffled edges: exactly the same parameters
    pe = torch.randperm(g.edge_index.shape[1], generator=gen)
    shuffled = g.clone()
    shuffled.edge_index, shuffled.edge_attr = g.edge_index[:, pe], g.edge_attr[pe]
    shuffled.edge_type = g.edge_type[pe]
    assert same_state(field, from_graph(shuffled))
    # renumbered nodes (and shuffled edges): hidden neurons may come back permuted -> same function
    renumbered = relabel(shuffled, torch.randperm(g.num_nodes, generator=gen))
    back = from_graph(renumbered)
    x = points()
    with torch.no_grad():
        for a, b in zip(field(x), back(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # ...and exactly the same grid and input/output parameters, the same weight multiset
    for key, p in field.state_dict().items():
        q = back.state_dict()[key]
        assert torch.equal(p.reshape(-1).sort().values, q.reshape(-1).sort().values)
        if key in ("table", "triplane"):
            assert torch.equal(p, q)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_no_isolated_nodes_and_features_bounded(name: str) -> None:
    g = to_graph(build_field(name, seed=0))
    deg = torch.bincount(g.edge_index.reshape(-1), minlength=g.num_nodes)
    assert int(deg.min()) >= 1
    assert g.x.shape == (g.num_nodes, len(X_COLUMNS)) and g.x.dtype == torch.float32
    for t in (g.x, g.node_pos, g.edge_attr):
        assert bool(torch.isfinite(t).all())
    assert float(g.x.min()) >= -1.0 and float(g.x.max()) <= 1.0
    # dense hash vertices sit up to half a cell outside the box (tcnn's +0.5 offset)
    assert float(g.node_pos.min()) >= -0.05 and float(g.node_pos.max()) <= 1.05
    assert g.edge_attr.shape == (g.edge_index.shape[1], 1) and g.edge_attr.dtype == torch.float32
    for k in ("edge_index", "edge_type", "node_type", "node_layer", "node_order", "node_level"):
        assert getattr(g, k).dtype == torch.long
    # attribute names other than edge_index must not be offset by PyG when batching
    assert [k for k in g.keys() if "index" in k] == ["edge_index"]


def test_schema_attribute_values() -> None:
    spec = ZOO["hash"]
    g = to_graph(build_field(spec, seed=0))
    n_layers = spec.n_hidden_layers + 1
    hidden = g.node_type == NodeType.HIDDEN
    assert bool((g.node_order[hidden] == -1).all())
    assert bool((g.x[hidden, X_COLUMNS.index("order")] == -1).all())
    entries = g.node_type == NodeType.HASH_ENTRY
    assert bool((g.node_layer[entries] == -1).all())
    out = g.node_type == NodeType.OUTPUT
    assert sorted(g.node_order[out].tolist()) == [0, 1, 2, 3]
    assert bool((g.node_layer[out] == n_layers).all())
    assert bool((g.x[out, X_COLUMNS.index("layer")] == 1.0).all())
    feats = g.node_type == NodeType.GRID_FEATURE
    assert sorted(g.node_order[feats].tolist()) == list(range(8))
    assert g.node_level[feats].tolist() == [i // 2 for i in g.node_order[feats].tolist()]
    pad = g.node_type == NodeType.PAD_INPUT
    assert sorted(g.node_order[pad].tolist()) == list(range(8, 16))
    # an entry's index is not a feature (a hashed entry's is a hash bucket); level l is l / 31
    last = find_node(g, node_type=NodeType.HASH_ENTRY, node_level=3, node_order=4095)
    assert g.x[last, X_COLUMNS.index("order")] == -1.0
    assert g.x[last, X_COLUMNS.index("level")] == pytest.approx(3 / 31)
    assert g.x[last, X_COLUMNS.index("log_res")] == pytest.approx(math.log2(128) / 16)
    assert g.x[last, X_COLUMNS.index("has_pos")] == 0.0  # level 3 is hashed
    # outputs r, g, b, density: order 0, 1/3, 2/3, 1 in every architecture
    assert g.x[out, X_COLUMNS.index("order")].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def frequency_inputs(g: Data) -> dict[tuple[int, int, int], torch.Tensor]:
    """x row of every tcnn Frequency input, keyed by (axis d, log2 frequency k, phase s) computed
    from its index ``d * 2F + 2k + s`` alone (F from the spec)."""
    n_freq = g.spec.n_frequencies
    out = {}
    for i in (g.node_type == NodeType.INPUT).nonzero().flatten().tolist():
        j = int(g.node_order[i])
        out[(j // (2 * n_freq), (j % (2 * n_freq)) // 2, j % 2)] = g.x[i]
    assert len(out) == 6 * n_freq
    return out


def test_same_meaning_same_x_across_architectures() -> None:
    """Equal inputs look equal in all 13 zoo architectures; different ones differ."""
    graphs = {n: to_graph(build_field(n, seed=0)) for n in ZOO_NAMES}
    col = {c: X_COLUMNS.index(c) for c in X_COLUMNS}
    freq = {n: frequency_inputs(g) for n, g in graphs.items() if hasattr(g.spec, "n_frequencies")}
    assert len(freq) == 9  # the mlp (5) and triplane (4) families
    pairs = 0
    for a in freq:
        for b in freq:
            for key in freq[a].keys() & freq[b].keys():
                assert torch.equal(freq[a][key], freq[b][key]), (a, b, key)
                pairs += 1
    assert pairs > 9 * 100
    # sin(pi y) (axis 1, k 0, phase 0) in mlp and triplane: was order 0.3357 vs 0.3168
    row = freq["mlp"][(1, 0, 0)]
    assert row[col["axis"]] == 0.5 and row[col["log_freq"]] == 0.0 and row[col["phase"]] == 0.0
    assert row[col["order"]] == -1.0 and row[col["layer"]] == 0.0
    for name, rows in freq.items():  # (axis, frequency, phase) -> distinct rows within a graph
        assert len({tuple(r.tolist()) for r in rows.values()}) == len(rows), name
    # the same output, the same grid level (same resolution) and the padded nodes: equal rows
    outs = {n: g.x[g.node_type == NodeType.OUTPUT] for n, g in graphs.items()}
    assert all(torch.equal(outs["mlp"], o) for o in outs.values())
    assert len({tuple(r.tolist()) for r in outs["hash"]}) == 4  # r, g, b, density differ

    def feature_rows(name: str) -> dict[int, torch.Tensor]:
        g = graphs[name]
        m = (g.node_type == NodeType.GRID_FEATURE).nonzero().flatten().tolist()
        return {int(g.node_level[i]): g.x[i] for i in m}

    h, h8, h11 = (
        feature_rows("hash"),
        feature_rows("hash_8_levels"),
        feature_rows("hash_11_table_size"),
    )
    assert torch.equal(h[0], h8[0]) and torch.equal(h[0], h11[0])  # res 16 in all three
    assert all(torch.equal(h[lv], h11[lv]) for lv in range(4))  # same levels, other table size
    assert not torch.equal(h[1], h8[1])  # level 1: res 32 vs 23, a different level
    assert len({tuple(r.tolist()) for r in h8.values()}) == 8
    for g in graphs.values():
        # the features of one level (channels of a tri-plane) are interchangeable, as are the
        # padded inputs (all fed 1) and the padded outputs (read by nothing): equal rows
        for t in (NodeType.PAD_INPUT, NodeType.PAD_OUTPUT, NodeType.HIDDEN):
            for layer in g.node_layer[g.node_type == t].unique().tolist():
                rows = g.x[(g.node_type == t) & (g.node_layer == layer)]
                assert bool((rows == rows[:1]).all()), t
        feats = g.node_type == NodeType.GRID_FEATURE
        for lv in g.node_level[feats].unique().tolist():
            rows = g.x[feats & (g.node_level == lv)]
            assert bool((rows == rows[:1]).all())


# ------------------------------------------------------------------------------ symmetry
def test_hidden_permutation_gives_isomorphic_graph_and_same_outputs() -> None:
    field = build_field("mlp_32_width", seed=5)
    perm_field = build_field("mlp_32_width", seed=5)
    gen = torch.Generator().manual_seed(1)
    ws = list(perm_field.mlp.weights)
    perms = [torch.randperm(w.shape[0], generator=gen) for w in ws[:-1]]
    with torch.no_grad():
        for i, p in enumerate(perms):  # permute the outputs of layer i and inputs of layer i+1
            ws[i].copy_(ws[i][p])
            ws[i + 1].copy_(ws[i + 1][:, p])
    x = points()
    with torch.no_grad():
        for a, b in zip(field(x), perm_field(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    g, h = to_graph(field), to_graph(perm_field)
    for k in ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x", "edge_index"):
        assert torch.equal(getattr(g, k), getattr(h, k))
    src_layer = g.node_layer[g.edge_index[0]]
    for layer in range(len(ws)):
        m = src_layer == layer
        assert torch.equal(
            g.edge_attr[m].flatten().sort().values, h.edge_attr[m].flatten().sort().values
        )
    # the explicit isomorphism: hidden node i of layer l -> node of neuron perm^-1 ...
    node_map = torch.arange(g.num_nodes)
    widths = mlp_widths(field.spec)
    start = np.cumsum([0] + widths)
    for i, p in enumerate(perms):
        inv = torch.empty_like(p)
        inv[p] = torch.arange(p.numel())
        node_map[start[i + 1] : start[i + 2]] = int(start[i + 1]) + inv
    mapped = node_map[g.edge_index]
    key_g = mapped[0] * g.num_nodes + mapped[1]
    key_h = h.edge_index[0] * h.num_nodes + h.edge_index[1]
    og, oh = key_g.argsort(), key_h.argsort()
    assert torch.equal(key_g[og], key_h[oh])
    assert torch.equal(g.edge_attr[og], h.edge_attr[oh])
    assert not torch.equal(g.edge_attr, h.edge_attr)  # the permutation did move values


# ------------------------------------------------------------------------------ values
def test_hash_edges_carry_table_values_and_dense_positions() -> None:
    spec = ZOO["hash_8_levels"]
    field = build_field(spec, seed=2)
    g = to_graph(field)
    F = spec.n_features_per_level
    offsets, dense = spec.level_offsets, spec.level_is_dense
    picks = [(0, 0, 0), (0, 4095, 1), (1, 777, 0), (7, 4095, 1), (5, 1234, 1)]
    assert dense[0] and not dense[7]
    for lv, e, f in picks:
        src = find_node(g, node_type=NodeType.HASH_ENTRY, node_level=lv, node_order=e)
        dst = find_node(g, node_type=NodeType.GRID_FEATURE, node_order=lv * F + f)
        assert g.node_level[dst] == lv and g.node_layer[dst] == 0
        assert edge_value(g, src, dst) == field.table[offsets[lv] + e, f]
    res = int(spec.level_resolutions[0])  # 16, dense: entry = x + y res + z res^2
    x, y, z = 3, 11, 14
    node = find_node(
        g, node_type=NodeType.HASH_ENTRY, node_level=0, node_order=x + y * res + z * res * res
    )
    scale = float(spec.level_scales[0])
    expected = (torch.tensor([x, y, z], dtype=torch.float64) - 0.5) / scale
    torch.testing.assert_close(g.node_pos[node], expected.float())
    assert g.x[node, X_COLUMNS.index("has_pos")] == 1.0
    # node_pos is where the field reads that entry: a lone non-zero entry, sampled at its
    # position, comes back with interpolation weight 1
    with torch.no_grad():
        field.table.zero_()
        field.table[offsets[0] + x + y * res + z * res * res] = torch.tensor([2.0, -3.0])
    feats = field.features(g.node_pos[node][None].double().float())
    torch.testing.assert_close(feats[0, :F], torch.tensor([2.0, -3.0]), rtol=0, atol=1e-4)


def test_dense_level_padding_entries_have_no_position() -> None:
    # res 5 -> 125 vertices in a table rounded up to 128 entries; level 1: res 9 -> 729 -> 736
    spec = HashGridSpec(n_levels=2, base_resolution=5, max_resolution=9, log2_table_size=10)
    g = to_graph(build_field(spec, seed=0))
    has_pos = X_COLUMNS.index("has_pos")
    for lv, res, size in [(0, 5, 128), (1, 9, 736)]:
        last = find_node(g, node_type=NodeType.HASH_ENTRY, node_level=lv, node_order=res**3 - 1)
        top = (res - 1.5) / float(spec.level_scales[lv])
        torch.testing.assert_close(g.node_pos[last], torch.full((3,), top))
        assert g.x[last, has_pos] == 1.0
        for e in range(res**3, size):
            pad = find_node(g, node_type=NodeType.HASH_ENTRY, node_level=lv, node_order=e)
            assert g.node_pos[pad].tolist() == [0.0, 0.0, 0.0] and g.x[pad, has_pos] == 0.0
        with pytest.raises(AssertionError):
            find_node(g, node_type=NodeType.HASH_ENTRY, node_level=lv, node_order=size)


def test_plane_edges_carry_triplane_values_and_positions() -> None:
    spec = ZOO["triplane_16_resolution"]
    field = build_field(spec, seed=2)
    g = to_graph(field)
    R, n_freq_in = spec.resolution, 6 * spec.n_frequencies
    for k, v, u, c in [(0, 0, 0, 0), (1, 3, 12, 7), (2, 15, 1, 15), (0, 9, 4, 2)]:
        src = find_node(g, node_type=NodeType.PLANE_CELL, node_level=k, node_order=v * R + u)
        dst = find_node(g, node_type=NodeType.GRID_FEATURE, node_order=n_freq_in + c)
        assert edge_value(g, src, dst) == field.triplane[k, v, u, c]
    # plane 1 spans world axes (0, 2): u on x, v on z, 0.5 on y
    k, v, u = 1, 3, 12
    cell = find_node(g, node_type=NodeType.PLANE_CELL, node_level=k, node_order=v * R + u)
    assert torch.equal(g.node_pos[cell], torch.tensor([u / (R - 1), 0.5, v / (R - 1)]))
    # node_pos is where the field reads that cell: a lone non-zero cell, sampled at its position
    planes = torch.zeros(3, R, R, 2)
    planes[k, v, u] = torch.tensor([1.0, -2.0])
    got = triplane_features(2 * g.node_pos[cell][None] - 1, planes)[0]
    torch.testing.assert_close(got, torch.tensor([1.0, -2.0]))


def test_mlp_weight_edges_follow_matrix_layout() -> None:
    field = build_field(MLPSpec(n_hidden_layers=2, n_frequencies=20), seed=4)  # 120 -> 128 inputs
    g = to_graph(field)
    w0, w1, w2 = (w.detach() for w in field.mlp.weights)
    hidden1 = ((g.node_type == NodeType.HIDDEN) & (g.node_layer == 1)).nonzero().flatten()
    hidden2 = ((g.node_type == NodeType.HIDDEN) & (g.node_layer == 2)).nonzero().flatten()
    i_in = find_node(g, node_layer=0, node_order=17)
    assert edge_value(g, i_in, int(hidden1[5])) == w0[5, 17]  # hidden index = rank of node id
    pad = find_node(g, node_layer=0, node_order=125)  # a PAD_INPUT
    assert g.node_type[pad] == NodeType.PAD_INPUT
    assert edge_value(g, pad, int(hidden1[0])) == w0[0, 125]
    assert edge_value(g, int(hidden1[9]), int(hidden2[30])) == w1[30, 9]
    o = find_node(g, node_layer=3, node_order=13)
    assert g.node_type[o] == NodeType.PAD_OUTPUT
    assert edge_value(g, int(hidden2[63]), o) == w2[13, 63]


@pytest.mark.parametrize("name", ["mlp_32_width", "triplane_16_resolution", "hash"])
def test_padded_output_weights_have_their_own_type(name: str) -> None:
    field = build_field(name, seed=6)
    g = to_graph(field)
    w_last = field.mlp.weights[-1].detach()  # [16, n_neurons]; rows 4.. feed padded outputs
    pad = g.edge_type == EdgeType.PAD_WEIGHT
    assert int(pad.sum()) == 12 * w_last.shape[1]
    assert bool((g.node_type[g.edge_index[1, pad]] == NodeType.PAD_OUTPUT).all())
    assert bool((g.node_type[g.edge_index[0, pad]] == NodeType.HIDDEN).all())
    assert torch.equal(g.edge_attr[pad, 0].sort().values, w_last[4:].reshape(-1).sort().values)
    weight = g.edge_type == EdgeType.WEIGHT
    assert not bool((g.node_type[g.edge_index[1, weight]] == NodeType.PAD_OUTPUT).any())
    # a padded-output weight retyped as WEIGHT (or the reverse) is not the same graph
    for src_t, dst_t in (
        (EdgeType.PAD_WEIGHT, EdgeType.WEIGHT),
        (EdgeType.WEIGHT, EdgeType.PAD_WEIGHT),
    ):
        bad = g.clone()
        bad.edge_type = g.edge_type.clone()
        i = int((g.edge_type == src_t).nonzero()[-1])
        j = int((g.edge_type == dst_t).nonzero()[-1])
        bad.edge_type[i], bad.edge_type[j] = int(dst_t), int(src_t)  # counts unchanged
        with pytest.raises(GraphError, match="padded output"):
            from_graph(bad)
    unknown = g.clone()
    unknown.edge_type = g.edge_type.clone()
    unknown.edge_type[0] = len(EdgeType) + 3
    with pytest.raises(GraphError, match="edge types up to"):
        from_graph(unknown)


# ------------------------------------------------------------------------------ probe vertices
def same_graph(g: Data, h: Data) -> bool:
    keys = ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x", "edge_index")
    return g.num_nodes == h.num_nodes and all(
        torch.equal(getattr(g, k), getattr(h, k)) for k in (*keys, "edge_attr", "edge_type")
    )


@pytest.mark.parametrize("name", ["hash", "hash_11_table_size"])
def test_probe_vertices_are_derived_structure(name: str) -> None:
    spec = ZOO[name]
    field = build_field(spec, seed=4)
    g0 = to_graph(field, probe_vertices=0)
    g = to_graph(field, probe_vertices=6)
    assert counts_by_type(g) == expected_counts(spec, 6)
    # the parameter graph comes first, unchanged; probes are appended
    n, e = g0.num_nodes, g0.edge_index.shape[1]
    for k in ("node_type", "node_layer", "node_order", "node_level", "node_pos", "x"):
        assert torch.equal(getattr(g, k)[:n], getattr(g0, k))
    for k in ("edge_index", "edge_attr", "edge_type"):
        assert torch.equal(
            getattr(g, k)[..., :e] if k == "edge_index" else getattr(g, k)[:e], getattr(g0, k)
        )
    # from_graph ignores them: bit-identical with or without
    assert same_state(field, from_graph(g)) and same_state(field, from_graph(g0))
    # the lattice: cell centres ((i, j, k) + 0.5) / 6, x fastest, inside the box
    probe = (g.node_type == NodeType.PROBE_VERTEX).nonzero().flatten()
    assert probe.tolist() == list(range(n, n + 216))
    c = (torch.arange(6) + 0.5) / 6
    assert torch.equal(g.node_pos[probe[1 + 6 * 2 + 36 * 5]], torch.stack([c[1], c[2], c[5]]))
    assert bool((g.x[probe, X_COLUMNS.index("has_pos")] == 1).all())
    assert bool((g.x[probe] >= -1).all() and (g.x[probe] <= 1).all())
    # each probe -> grid feature (l, f) edge carries the feature the field reads there
    m = g.edge_type == EdgeType.PROBE
    src, dst = g.edge_index[:, m]
    assert bool((g.node_type[dst] == NodeType.GRID_FEATURE).all())
    feats = field.features(g.node_pos[src])  # [P * L * F, L * F]
    read = feats.gather(1, g.node_order[dst][:, None])[:, 0]
    assert torch.equal(g.edge_attr[m, 0], read)
    # ...which a hashed level's HASH edges could not say: make one hashed entry stand out
    lv = int(np.flatnonzero(~spec.level_is_dense)[0])
    with torch.no_grad():
        field.table.zero_()
    pts = g.node_pos[probe]
    idx = hash_entry_read_at(spec, pts[7:8], lv)  # the 8 entries probe 7 reads on that level
    with torch.no_grad():
        field.table[int(spec.level_offsets[lv]) + idx, 0] = 1.0
    h = to_graph(field, probe_vertices=6)
    m_lv = m & (g.node_order[g.edge_index[1]] == lv * spec.n_features_per_level)
    lit = g.edge_index[0, m_lv][h.edge_attr[m_lv, 0] > 0] - n
    assert 7 in lit.tolist()  # partition of unity: the 8 weights sum to 1 at probe 7
    v7 = h.edge_attr[m_lv, 0][g.edge_index[0, m_lv] - n == 7]
    torch.testing.assert_close(v7, torch.ones(1), rtol=0, atol=1e-6)


def hash_entry_read_at(spec: HashGridSpec, p: torch.Tensor, level: int) -> torch.Tensor:
    """The 8 table indices (within the level) that tcnn reads at AABB-normalised point ``p``."""
    from graphnerf.fields import hash_grid_indices

    scale = float(spec.level_scales[level])
    pos = p.double() * scale + 0.5
    corners = pos.floor().long()[:, None, :] + torch.tensor(
        [[(c >> d) & 1 for d in range(3)] for c in range(8)]
    )
    return (
        hash_grid_indices(
            corners[:, :, None, :],
            torch.tensor([int(spec.level_resolutions[level])]),
            torch.tensor([int(spec.level_table_sizes[level])]),
            torch.tensor([bool(spec.level_is_dense[level])]),
        )
        .reshape(-1)
        .unique()
    )


def test_probe_transforms_match_to_graph_and_encoder_view() -> None:
    field = build_field("hash", seed=9)
    g0, g = to_graph(field, probe_vertices=0), to_graph(field, probe_vertices=5)
    added = AddProbeVertices(5)(g0)
    assert same_graph(added, g)
    assert g0.num_nodes == g.num_nodes - 125 and g0.x.shape[0] == g0.num_nodes  # input untouched
    with pytest.raises(GraphError, match="already has probe vertices"):
        AddProbeVertices(5)(g)
    mlp = to_graph(build_field("mlp_32_width", seed=0))
    assert AddProbeVertices(5)(mlp) is not None and same_graph(AddProbeVertices(5)(mlp), mlp)
    with pytest.raises(GraphError, match="probe vertices tie a hash grid"):
        to_graph(build_field("mlp_32_width"), probe_vertices=4)
    with pytest.raises(GraphError, match="lattice size"):
        to_graph(field, probe_vertices=-2)
    # encoder view: hashed levels (1..3 of hash) are seen through the probes only
    view = HashedLevelsViaProbes()(g)
    spec = field.spec
    nodes, edges = counts_by_type(view)
    assert nodes[NodeType.HASH_ENTRY] == 4096 and edges[EdgeType.HASH] == 4096 * 2
    assert nodes[NodeType.PROBE_VERTEX] == 125 and edges[EdgeType.PROBE] == 125 * 8
    assert view.num_nodes == g.num_nodes - 3 * 4096
    deg = torch.bincount(view.edge_index.reshape(-1), minlength=view.num_nodes)
    assert int(deg.min()) >= 1 and int(view.edge_index.max()) == view.num_nodes - 1
    # the kept edges keep their endpoints' attributes and values
    keep = g.edge_type != EdgeType.HASH
    keep |= (g.edge_type == EdgeType.HASH) & (g.node_level[g.edge_index[0]] == 0)
    assert torch.equal(view.edge_attr, g.edge_attr[keep])
    for k in ("node_type", "node_order", "x"):
        assert torch.equal(getattr(view, k)[view.edge_index], getattr(g, k)[g.edge_index[:, keep]])
    with pytest.raises(GraphError, match="does not match the spec"):
        from_graph(view)
    with pytest.raises(GraphError, match="needs probe vertices"):
        HashedLevelsViaProbes()(g0)
    all_hashed = HashedLevelsViaProbes()(
        to_graph(build_field("hash_11_table_size"), probe_vertices=2)
    )
    assert NodeType.HASH_ENTRY not in counts_by_type(all_hashed)[0]
    assert spec.level_is_dense.tolist() == [True, False, False, False]
    # batches of probed graphs collate, and each rebuilds exactly
    batch = Batch.from_data_list(
        [g, to_graph(build_field("hash_8_levels", seed=1), probe_vertices=3)]
    )
    assert same_state(field, from_graph(batch.to_data_list()[0]))
    with pytest.raises(GraphError, match="not a Batch"):
        HashedLevelsViaProbes()(batch)


# ------------------------------------------------------------------------------ batching
def test_mixed_architecture_batch_collates_and_uncollates() -> None:
    fields = [
        build_field(n, seed=i) for i, n in enumerate(["mlp", "triplane", "hash", "hash_8_levels"])
    ]
    seq = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    graphs = [to_graph(f) for f in fields] + [to_graph(seq)]
    batch = Batch.from_data_list(graphs)
    assert batch.num_graphs == 5
    assert batch.spec == [f.spec for f in fields] + [graphs[-1].spec]
    assert torch.equal(batch.node_order, torch.cat([g.node_order for g in graphs]))
    assert batch.edge_index.max() == batch.num_nodes - 1
    with pytest.raises(GraphError, match="batch of 5"):
        from_graph(batch)
    for f, g in zip(fields, batch.to_data_list()[:4], strict=True):
        back = from_graph(g)
        assert same_state(f, back) and same_outputs(f, back)
    back_seq = from_graph(batch.to_data_list()[4])
    x = torch.randn(7, 3)
    assert torch.equal(seq(x), back_seq(x))
    loader = DataLoader(graphs, batch_size=2, shuffle=False)
    rebuilt = [from_graph(g) for b in loader for g in b.to_data_list()]
    assert [type(r) for r in rebuilt[:4]] == [type(f) for f in fields]
    assert all(same_state(f, r) for f, r in zip(fields, rebuilt, strict=False))


# ------------------------------------------------------------------------------ Sequential
def test_sequential_with_biases_round_trip() -> None:
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Linear(4, 6),
        nn.LeakyReLU(0.1),
        nn.Linear(6, 6, bias=False),
        nn.GELU(approximate="tanh"),
        nn.Linear(6, 3),
    )
    g = to_graph(seq)
    assert isinstance(g.spec, SequentialSpec)
    nodes, edges = counts_by_type(g)
    assert nodes == {NodeType.INPUT: 4, NodeType.HIDDEN: 12, NodeType.OUTPUT: 3, NodeType.BIAS: 2}
    assert edges == {EdgeType.WEIGHT: 4 * 6 + 6 * 6 + 6 * 3, EdgeType.BIAS: 6 + 3}
    # bias node of layer 0 -> hidden neuron j of layer 1 carries bias[j]
    bias0 = find_node(g, node_type=NodeType.BIAS, node_layer=0)
    h1 = ((g.node_type == NodeType.HIDDEN) & (g.node_layer == 1)).nonzero().flatten()
    assert edge_value(g, bias0, int(h1[4])) == seq[0].bias[4]
    back = from_graph(g)
    assert [type(m) for m in back] == [type(m) for m in seq]
    assert back[1].negative_slope == 0.1 and back[3].approximate == "tanh"
    assert back[2].bias is None
    assert same_state(seq, back)
    x = torch.randn(9, 4)
    assert torch.equal(seq(x), back(x))
    # a plain list of modules, and a single Linear
    lst = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    back = from_graph(to_graph(lst))
    assert torch.equal(nn.Sequential(*lst)(x[:, :2]), back(x[:, :2]))
    lin = nn.Linear(3, 2)
    assert torch.equal(lin(x[:, :3]), from_graph(to_graph(lin))(x[:, :3]))


# ------------------------------------------------------------------------------ tcnn
@pytest.mark.parametrize("name", ["mlp", "triplane", "hash"])
def test_tcnn_flat_params_and_checkpoint_path(name: str, tmp_path) -> None:
    from graphnerf.io import export_tcnn

    field = build_field(name, seed=7)
    params = export_tcnn(field)
    assert same_state(field, from_graph(to_graph(params, spec=field.spec)))
    path = tmp_path / "nerf_weights.pth"
    torch.save(params, path)
    g = to_graph(str(path))  # spec inferred from the zoo
    assert g.spec == field.spec
    assert same_outputs(field, from_graph(g))


def test_tcnn_module_through_state_dict(monkeypatch) -> None:
    """Without tinycudann installed, stand in a fake tcnn module type (flat ``params``)."""
    from graphnerf.graph import convert
    from graphnerf.io import export_tcnn

    class FakeTcnnModule(nn.Module):
        def __init__(self, params: torch.Tensor) -> None:
            super().__init__()
            self.params = nn.Parameter(params)

    class GmnerfNerf(nn.Module):
        def __init__(self, params: dict) -> None:
            super().__init__()
            self.encoding = FakeTcnnModule(params["encoding.params"])
            self.mlp_base = FakeTcnnModule(params["mlp_base.params"])

    field = build_field("hash", seed=8)
    module = GmnerfNerf(export_tcnn(field))
    with pytest.raises(GraphError, match="unsupported module type GmnerfNerf"):
        to_graph(module)
    monkeypatch.setattr(convert, "_tcnn_module_types", lambda: (FakeTcnnModule,))
    assert same_state(field, from_graph(to_graph(module, spec="hash")))


# ------------------------------------------------------------------------------ errors
def test_bad_inputs_give_clear_errors(tmp_path) -> None:
    with pytest.raises(GraphError, match="unsupported module type Conv2d"):
        to_graph(nn.Conv2d(1, 2, 3))
    with pytest.raises(GraphError, match=r"module 1 \(Conv1d\) is not supported"):
        to_graph(nn.Sequential(nn.Linear(2, 2), nn.Conv1d(1, 1, 1)))
    with pytest.raises(GraphError, match="Linear 0 has 3 outputs but Linear 1 has 4 inputs"):
        to_graph([nn.Linear(2, 3), nn.Linear(4, 1)])
    with pytest.raises(GraphError, match="cannot convert int"):
        to_graph(3)
    field = build_field("hash_11_table_size", seed=0)
    with torch.no_grad():
        field.table[5, 1] = float("nan")
    with pytest.raises(GraphError, match="'table' holds 1 non-finite"):
        to_graph(field)
    seq = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        seq[0].bias[0] = float("inf")
    with pytest.raises(GraphError, match="non-finite"):
        to_graph(seq)
    with pytest.raises(GraphError, match="spec .* given for a field"):
        to_graph(build_field("mlp"), spec="hash")


def test_from_graph_rejects_graphs_that_do_not_match() -> None:
    g = to_graph(build_field("hash", seed=0), probe_vertices=0)  # the last edges: HASH
    with pytest.raises(GraphError, match="does not match the spec.*HASH=32768.*HASH=16384"):
        from_graph(g, spec=ZOO["hash_11_table_size"])
    with pytest.raises(GraphError, match="does not match the spec"):
        from_graph(g, spec=ZOO["mlp"])
    with pytest.raises(GraphError, match="does not match the spec"):
        from_graph(g, spec=ZOO["hash"].replace(n_neurons=32))
    short = g.clone()
    short.edge_attr = g.edge_attr[:-1]
    with pytest.raises(GraphError, match="edge_attr must be"):
        from_graph(short)
    # one edge moved onto another's slot: counts still match, coverage does not
    dup = g.clone()
    dup.edge_index = g.edge_index.clone()
    dup.edge_index[:, -1] = g.edge_index[:, -2]
    with pytest.raises(GraphError, match="cover"):
        from_graph(dup)
    missing = g.clone()
    del missing.node_order
    with pytest.raises(GraphError, match="node_order"):
        from_graph(missing)
    nan = g.clone()
    nan.edge_attr = g.edge_attr.clone()
    nan.edge_attr[3] = float("nan")
    with pytest.raises(GraphError, match="non-finite"):
        from_graph(nan)


# ------------------------------------------------------------------------------ files, summary
def test_save_load_graph_weights_only(tmp_path) -> None:
    field = build_field("triplane_8_channels", seed=1)
    g = to_graph(field)
    path = save_graph(g, tmp_path / "g.pt")
    raw = torch.load(path, weights_only=True)  # nothing but tensors, strings, numbers
    assert raw["spec"] == field.spec.to_json()
    h = load_graph(path)
    for k in ("edge_index", "edge_attr", "edge_type", "node_type", "x", "node_pos"):
        assert torch.equal(getattr(g, k), getattr(h, k))
    assert h.spec == field.spec and h.num_nodes == g.num_nodes
    assert same_state(field, from_graph(h))
    seq = nn.Sequential(nn.Linear(2, 3), nn.SiLU(), nn.Linear(3, 1))
    s = load_graph(save_graph(to_graph(seq), tmp_path / "s.pt"))
    x = torch.randn(4, 2)
    assert torch.equal(seq(x), from_graph(s)(x))
    (tmp_path / "bad.pt").write_bytes(b"not a graph")
    with pytest.raises(GraphError, match="cannot read graph"):
        load_graph(tmp_path / "bad.pt")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_graph_summary_counts_by_type() -> None:
    text = graph_summary(to_graph(build_field("hash", seed=0)))
    assert "| HASH_ENTRY | 16,384 | -1 |" in text
    assert "| GRID_FEATURE | 8 | 0 |" in text
    assert "| HASH | 32,768 |" in text and "| WEIGHT | 9,472 |" in text
    assert "| PAD_WEIGHT | 768 |" in text
    assert text.startswith("spec: hash (")
