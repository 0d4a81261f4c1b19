"""GraphZooDataset over a zoo folder: manifest fields, filters, batching, the on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from graphnerf.data import ManifestError
from graphnerf.fields import ZOO, build_field
from graphnerf.graph import GraphZooDataset, from_graph
from graphnerf.graph import dataset as dataset_module
from graphnerf.io import load_field, save_field

ARCHS = ("mlp_32_width", "hash_11_table_size", "triplane_16_resolution")
OBJECTS = (("chair_0", "chair", "train"), ("lamp_0", "lamp", "test"), ("chair_1", "chair", "val"))


def write_zoo(root: Path) -> list[dict]:
    """3 objects x 3 archs, one .safetensors each, and their manifest."""
    (root / "nerfs").mkdir(parents=True)
    records = []
    for i, (obj, cls, split) in enumerate(OBJECTS):
        for j, arch in enumerate(ARCHS):
            rid = f"{obj}-{arch}"
            rot = [1.0, 0.0, 0.0, 0.0] if j == 0 else [0.0, 1.0, 0.0, 0.0]
            rel = f"nerfs/{rid}.safetensors"
            save_field(build_field(arch, seed=10 * i + j), root / rel, object_id=obj, rotation=rot)
            records.append(
                {
                    "id": rid,
                    "file": rel,
                    "arch": arch,
                    "class": cls,
                    "split": split,
                    "object": obj,
                    "rotation": rot,
                    "psnr": 30.0,
                }
            )
    with open(root / "manifest.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return records


@pytest.fixture
def zoo(tmp_path: Path) -> tuple[Path, list[dict]]:
    root = tmp_path / "zoo"
    return root, write_zoo(root)


def test_items_carry_manifest_fields_and_rebuild(zoo) -> None:
    root, records = zoo
    ds = GraphZooDataset(root)
    assert len(ds) == 9 and ds.classes == ["chair", "lamp"] and ds.num_classes == 2
    for rec, g in zip(records, ds, strict=True):
        assert g.id == rec["id"] and g.arch == rec["arch"] and g.object == rec["object"]
        assert g.split == rec["split"] and g.class_name == rec["class"]
        assert g.y.tolist() == [ds.classes.index(rec["class"])]
        assert g.rotation.shape == (1, 4) and g.rotation[0].tolist() == rec["rotation"]
        field, saved = from_graph(g), load_field(root / rec["file"])
        assert field.spec == ZOO[rec["arch"]]
        assert all(
            torch.equal(p, q)
            for p, q in zip(field.state_dict().values(), saved.state_dict().values(), strict=True)
        )
    # filters: y indexes the classes of the whole manifest, not of the subset
    test = GraphZooDataset(root, split="test")
    assert {g.object for g in test} == {"lamp_0"} and test.classes == ["chair", "lamp"]
    assert all(int(g.y) == 1 for g in test)
    sub = GraphZooDataset(root, split=["train", "val"], arch="hash_11_table_size")
    assert [g.id for g in sub] == ["chair_0-hash_11_table_size", "chair_1-hash_11_table_size"]
    # a PyG transform runs on access
    marked = GraphZooDataset(root, arch="mlp_32_width", transform=lambda g: g.update({"m": 1}))
    assert [g.m for g in marked] == [1, 1, 1]


def test_mixed_batches_from_a_loader(zoo) -> None:
    root, _ = zoo
    loader = DataLoader(GraphZooDataset(root), batch_size=4, shuffle=False)
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [4, 4, 1]
    b = batches[0]
    assert b.y.shape == (4,) and b.rotation.shape == (4, 4) and len(b.spec) == 4
    for g in b.to_data_list():
        from_graph(g)  # every element rebuilds


def test_cache_hit_then_invalidated_by_rewrite(zoo, tmp_path: Path, monkeypatch) -> None:
    root, records = zoo
    cache = tmp_path / "cache"
    calls: list[str] = []
    real = dataset_module.to_graph

    def counting(nerf, *a, **k):
        calls.append(nerf.spec.to_json())
        return real(nerf, *a, **k)

    monkeypatch.setattr(dataset_module, "to_graph", counting)
    ds = GraphZooDataset(root, cache_dir=cache)
    first = [ds[i] for i in range(len(ds))]
    assert len(calls) == 9 and len(list(cache.glob("*.pt"))) == 9
    assert not list(cache.glob("*.tmp"))
    # second pass: served from the cache, the converter is never called
    second = [ds[i] for i in range(len(ds))]
    assert len(calls) == 9
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.edge_attr, b.edge_attr) and torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.x, b.x) and a.spec == b.spec and a.id == b.id
    # a new dataset object over the same cache also hits it
    again = GraphZooDataset(root, cache_dir=cache)
    _ = [again[i] for i in range(len(again))]
    assert len(calls) == 9
    # rewrite one NeRF: only that one is converted again, and the new weights come out
    rec = records[4]
    new_field = build_field(rec["arch"], seed=999)
    save_field(new_field, root / rec["file"])
    third = [ds[i] for i in range(len(ds))]
    assert len(calls) == 10
    rebuilt = from_graph(third[4])
    assert all(
        torch.equal(p, q)
        for p, q in zip(new_field.state_dict().values(), rebuilt.state_dict().values(), strict=True)
    )
    assert not torch.equal(third[4].edge_attr, first[4].edge_attr)
    _ = [ds[i] for i in range(len(ds))]
    assert len(calls) == 10


def test_probe_vertices_setting_is_part_of_the_cache_key(zoo, tmp_path: Path, monkeypatch) -> None:
    root, _ = zoo
    cache = tmp_path / "cache"
    calls: list[str] = []
    real = dataset_module.to_graph

    def counting(nerf, *a, **k):
        calls.append(nerf.spec.family)
        return real(nerf, *a, **k)

    monkeypatch.setattr(dataset_module, "to_graph", counting)
    plain = GraphZooDataset(root, arch="hash_11_table_size", cache_dir=cache, probe_vertices=0)
    probed = GraphZooDataset(root, arch="hash_11_table_size", cache_dir=cache, probe_vertices=4)
    a = [plain[i] for i in range(len(plain))]
    b = [probed[i] for i in range(len(probed))]  # other setting: converted again, not served
    assert len(calls) == 6
    for g, h in zip(a, b, strict=True):
        n_levels, n_feat = g.spec.n_levels, g.spec.n_features_per_level
        assert h.num_nodes == g.num_nodes + 4**3
        assert h.edge_index.shape[1] == g.edge_index.shape[1] + 4**3 * n_levels * n_feat
        assert torch.equal(h.edge_attr[: g.edge_attr.shape[0]], g.edge_attr)
    _ = [probed[i] for i in range(len(probed))]  # now cached under the probed setting
    assert len(calls) == 6


def test_corrupt_cache_entry_is_rebuilt_and_bad_manifest_rejected(zoo, tmp_path: Path) -> None:
    root, _ = zoo
    cache = tmp_path / "cache"
    ds = GraphZooDataset(root, cache_dir=cache)
    g0 = ds[0]
    entry = ds.cache_path(ds.records[0])
    entry.write_bytes(b"garbage")
    assert torch.equal(ds[0].edge_attr, g0.edge_attr)
    assert torch.load(entry, weights_only=True)["format"] == "graphnerf.graph"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.jsonl").write_text(json.dumps({"id": "a", "file": "a.safetensors"}) + "\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1: missing field\(s\)"):
        GraphZooDataset(bad)
    with pytest.raises(FileNotFoundError, match="no zoo manifest"):
        GraphZooDataset(tmp_path / "nowhere")
