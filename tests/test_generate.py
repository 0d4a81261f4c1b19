"""Zoo generation: the plan, the manifest, generation, resume after SIGKILL, shards, the CLI.

Everything runs on ``configs/data/tiny.yaml`` (2 classes x 2 objects x 2 rotations; train: mlp,
test: mlp + hash; 12 NeRFs in 6 batches of 2, 20 fitting steps, 24x24 evaluation views). One
uninterrupted generation (the module fixture ``reference``) is the yardstick every resumed or
sharded zoo must reproduce bit for bit.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch

from graphnerf.cli import main
from graphnerf.data import (
    MANIFEST,
    ManifestError,
    ZooConfigError,
    append_record,
    generate,
    load_zoo_config,
    make_plan,
    read_manifest,
    resolve_shard,
    split_sizes,
)
from graphnerf.io import load_field
from graphnerf.scenes import CLASSES

TIMING = ("seconds",)


def tiny(out: Path, *overrides: str):
    return load_zoo_config([f"out_dir={out}", *overrides], "tiny")


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".write-test-" in p.name]


def manifest_lines(root: Path) -> list[str]:
    return (root / MANIFEST).read_text().splitlines()


def assert_same_zoo(a: Path, b: Path) -> None:
    """Same ids, same manifest lines up to timing, bit-identical tensors, no duplicate lines."""
    ra = {r["id"]: r for r in read_manifest(a)}
    rb = {r["id"]: r for r in read_manifest(b)}
    assert sorted(ra) == sorted(rb)
    assert len(manifest_lines(b)) == len(rb), "duplicate manifest lines"
    for rid, rec in ra.items():
        other = rb[rid]
        assert {k: v for k, v in rec.items() if k not in TIMING} == {
            k: v for k, v in other.items() if k not in TIMING
        }, rid
        ta = safetensors.torch.load_file(a / rec["file"])
        tb = safetensors.torch.load_file(b / other["file"])
        assert ta.keys() == tb.keys()
        for key in ta:
            assert torch.equal(ta[key], tb[key]), f"{rid}: tensor {key} differs"
    assert temp_files(b) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "zoo"
    generate(tiny(out), progress=False, echo=False)
    return out


# ----------------------------------------------------------------------------- plan
def test_plan_splits_by_object_with_identity_rotation_and_configured_counts(tmp_path):
    cfg = load_zoo_config(
        [
            f"out_dir={tmp_path}",
            "objects_per_class=7",
            "rotations=3",
            "splits={train: 0.6, val: 0.2, test: 0.2}",
            "archs.test=[mlp,hash_8_levels]",
            "batch_size=5",
        ]
    )
    plan = make_plan(cfg)
    assert not (tmp_path / MANIFEST).exists()  # planning writes nothing
    jobs = plan.jobs
    assert len({j.id for j in jobs}) == len(jobs) and len({j.file for j in jobs}) == len(jobs)
    sizes = split_sizes(7, {"train": 0.6, "val": 0.2, "test": 0.2})
    assert sizes == {"train": 4, "val": 2, "test": 1}
    n_arch = {"train": 3, "val": 3, "test": 2}
    assert len(jobs) == len(CLASSES) * sum(sizes[s] * 3 * n_arch[s] for s in sizes)
    split_of: dict[str, str] = {}
    for j in jobs:  # no object in two splits
        assert split_of.setdefault(j.object, j.split) == j.split
    for c in CLASSES:
        per = [s for o, s in split_of.items() if o.startswith(c + "_")]
        assert {s: per.count(s) for s in sizes} == sizes
    rots: dict[str, set[tuple]] = {}
    for j in jobs:
        rots.setdefault(j.object, set()).add((j.rotation_index, j.rotation))
        assert abs(sum(v * v for v in j.rotation) - 1) < 1e-9 and j.rotation[0] >= 0
    for obj, rs in rots.items():
        assert (0, (1.0, 0.0, 0.0, 0.0)) in rs, obj
        assert len(rs) == 3 and len({q for _, q in rs}) == 3, obj  # same q for every arch
    # batches: one arch each, at most batch_size, every job exactly once; shards partition them
    assert all(len({j.arch for j in b.jobs}) == 1 and len(b.jobs) <= 5 for b in plan.batches)
    assert sorted(j.id for b in plan.batches for j in b.jobs) == sorted(j.id for j in jobs)
    shards = [plan.shard(i, 3) for i in range(3)]
    assert sorted(b.index for s in shards for b in s) == list(range(len(plan.batches)))
    # deterministic; the seed moves splits, rotations and init seeds
    assert make_plan(cfg) == plan
    other = make_plan(load_zoo_config([f"out_dir={tmp_path}", "objects_per_class=7", "seed=1"]))
    assert other.object_splits != plan.object_splits
    rot = {j.id: j.rotation for j in jobs}
    assert rot["chair_0000_r1_mlp"] != {j.id: j.rotation for j in other.jobs}["chair_0000_r1_mlp"]
    up = make_plan(load_zoo_config([f"out_dir={tmp_path}", "objects_per_class=2", "upright=true"]))
    assert all(j.rotation[1] == 0 and j.rotation[2] == 0 for j in up.jobs)


def test_resolve_shard_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_shard(None) == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_shard(None) == (2, 3)
    assert resolve_shard("1/4") == (1, 4)
    with pytest.raises(ValueError, match="i/n"):
        resolve_shard("4/4")


# ----------------------------------------------------------------------------- manifest
def _line(i: int) -> dict:
    return {
        "id": f"chair_{i:04d}_r0_mlp",
        "object": f"chair_{i:04d}",
        "class": "chair",
        "arch": "mlp",
        "rotation": [1.0, 0.0, 0.0, 0.0],
        "split": "train",
        "file": f"nerfs/chair/chair_{i:04d}_r0_mlp.safetensors",
        "psnr": float("inf") if i == 0 else 20.0 + i,
        "seconds": 1.0,
        "steps": 10,
    }


def _append_many(root: str, worker: int, n: int) -> None:
    for i in range(n):
        append_record(root, _line(1000 * worker + i))


def test_manifest_concurrent_appends_partial_line_duplicates_and_errors(tmp_path):
    procs = [
        multiprocessing.get_context("fork").Process(
            target=_append_many, args=(str(tmp_path), w, 150)
        )
        for w in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    recs = read_manifest(tmp_path)
    assert len(recs) == 450 and len(manifest_lines(tmp_path)) == 450
    assert {r["id"]: r["psnr"] for r in recs}["chair_0000_r0_mlp"] is None  # inf -> null

    # a partial last line (a writer killed mid-write) is ignored, then cut by the next append
    with open(tmp_path / MANIFEST, "a") as f:
        f.write('{"id": "chair_0007_r0_mlp", "obj')
    with pytest.warns(RuntimeWarning, match="partial last line"):
        assert len(read_manifest(tmp_path)) == 450
    dup = {**_line(1), "psnr": 99.0}
    with pytest.warns(RuntimeWarning, match="removed a partial last line"):
        append_record(tmp_path, dup)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recs = read_manifest(tmp_path)
    assert len(recs) == 450  # de-duplicated by id, the last line wins
    assert {r["id"]: r["psnr"] for r in recs}["chair_0001_r0_mlp"] == 99.0

    # invalid lines: clear errors naming file and line
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST).write_text(json.dumps(_line(1)) + "\n{not json\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: not a JSON line"):
        read_manifest(bad)
    for broken, match in [
        (
            {k: v for k, v in _line(1).items() if k != "split"},
            r":1: missing field\(s\) \['split'\]",
        ),
        ({**_line(1), "rotation": [1, 0, 0]}, ":1: field 'rotation' must be 4 finite numbers"),
        ({**_line(1), "rotation": [2, 0, 0, 0]}, ":1: field 'rotation' must be a unit quaternion"),
        ({**_line(1), "split": "holdout"}, ":1: field 'split' must be one of"),
        ({**_line(1), "file": "../x.safetensors"}, ":1: field 'file' must be a relative path"),
        ({**_line(1), "psnr": "high"}, ":1: field 'psnr' must be a number or null"),
    ]:
        (bad / MANIFEST).write_text(json.dumps(broken) + "\n")
        with pytest.raises(ManifestError, match=match):
            read_manifest(bad)
    with pytest.raises(FileNotFoundError, match="no zoo manifest"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(ManifestError, match="field 'steps'"):
        append_record(bad, {**_line(1), "steps": -1})


# ----------------------------------------------------------------------------- generation
def test_generation_writes_files_manifest_and_summary(reference):
    plan = make_plan(tiny(reference))
    recs = read_manifest(reference)
    assert sorted(r["id"] for r in recs) == sorted(j.id for j in plan.jobs)
    assert len(recs) == 12 and len(manifest_lines(reference)) == 12
    by_id = {j.id: j for j in plan.jobs}
    for rec in recs:
        field = load_field(reference / rec["file"])
        assert field.meta == rec  # the file's header holds the complete manifest line
        job = by_id[rec["id"]]
        assert rec["arch"] == job.arch and rec["split"] == job.split
        assert rec["rotation"] == list(job.rotation)
        assert isinstance(rec["psnr"], float) and 5.0 < rec["psnr"] < 80.0
        assert len(rec["psnr_views"]) == 4 and 0.0 <= rec["iou"] <= 1.0
        assert len(rec["psnr_fg_views"]) == 4 and 0.0 < rec["psnr_fg"] < 80.0
        assert 0.05 < rec["coverage"] <= 1.0  # the eval cameras frame the object
        assert rec["steps"] == 20 and rec["seconds"] > 0
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["n_nerfs"] == 12 and summary["complete"] is True
    assert summary["counts"]["split"] == {"test": 8, "train": 4}
    assert summary["counts"]["arch"] == {"hash": 4, "mlp": 8}
    assert summary["counts"]["class"] == {"chair": 6, "table": 6}
    assert summary["psnr"]["min"] <= summary["psnr"]["p5"] <= summary["psnr"]["mean"]
    assert summary["psnr_fg"]["min"] <= summary["psnr_fg"]["p5"] <= summary["psnr_fg"]["mean"]
    assert summary["run"]["fitted"] == 12 and summary["missing_files"] == []
    assert (reference / "config.yaml").is_file()
    assert temp_files(reference) == []
    # a second run over a complete zoo does nothing
    again = generate(tiny(reference), progress=False, echo=False)
    assert again["run"]["fitted"] == 0 and again["run"]["skipped"] == 12
    assert len(manifest_lines(reference)) == 12


def test_resume_after_sigkill_matches_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "zoo"
    log = tmp_path / "stderr.txt"
    cmd = [sys.executable, "-m", "graphnerf.cli", "generate", "--config", "tiny"]
    cmd += ["--no-progress", f"out_dir={out}"]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while not list((out / "nerfs").rglob("*.safetensors")):
            assert proc.poll() is None, f"generation ended before the kill: {log.read_text()}"
            assert time.monotonic() < deadline, "no NeRF written within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_before = len(manifest_lines(out)) if (out / MANIFEST).exists() else 0
    assert n_before < 12, "the kill came too late to test anything"
    summary = generate(tiny(out), progress=False, echo=False)
    run = summary["run"]
    assert run["fitted"] + run["registered"] + run["skipped"] == 12
    assert run["fitted"] < 12
    assert_same_zoo(reference, out)


def test_resume_repairs_partial_line_reregisters_files_and_refits_missing(reference, tmp_path):
    out = tmp_path / "zoo"
    shutil.copytree(reference, out)
    lines = manifest_lines(out)
    kept, dropped = lines[:-2], [json.loads(x) for x in lines[-2:]]
    assert dropped[0]["arch"] == dropped[1]["arch"] == "hash"  # the last batch
    # file 0 finished but unregistered; file 1 never written; a torn line; a stale temp file
    (out / MANIFEST).write_text("\n".join(kept) + "\n" + lines[-2][:40])
    (out / dropped[1]["file"]).unlink()
    stale = out / Path(dropped[1]["file"]).parent / f".{Path(dropped[1]['file']).name}.abc.tmp"
    stale.write_bytes(b"half a file")
    with pytest.warns(RuntimeWarning, match="partial last line"):
        summary = generate(tiny(out), progress=False, echo=False)
    assert summary["run"] == {**summary["run"], "fitted": 1, "registered": 1, "skipped": 10}
    assert_same_zoo(reference, out)  # the refitted batch-mate is bit-identical


def test_two_shards_equal_one_run(reference, tmp_path):
    out = tmp_path / "zoo"
    s0 = generate(tiny(out), shard=(0, 2), progress=False, echo=False)
    assert s0["complete"] is False and s0["run"]["fitted"] == 6
    s1 = generate(tiny(out), shard="1/2", progress=False, echo=False)
    assert s1["complete"] is True and s1["run"]["fitted"] == 6
    assert_same_zoo(reference, out)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("classes=[chair,spaceship]", r"unknown class\(es\) \['spaceship'\]"),
        (
            "archs.test=[mlp,transformer]",
            r"unknown architecture\(s\) \['transformer'\] in archs.test",
        ),
        ("splits={train: 0.5, val: 0.2, test: 0.2}", "split fractions must sum to 1"),
        ("rotations=0", "rotations must be >= 1"),
        ("objects_per_class=-1", "objects_per_class must be >= 1"),
        ("nonsense_key=3", "nonsense_key"),
        ("meshes=[teapot]", "'teapot' is neither a packaged real mesh"),
        ("classes=[]", "classes is empty and there are no meshes"),
    ],
)
def test_bad_config_is_a_clear_error_and_writes_nothing(tmp_path, capsys, override, match):
    out = tmp_path / "zoo"
    with pytest.raises(ZooConfigError, match=match):
        generate(load_zoo_config([f"out_dir={out}", override], "tiny"), echo=False)
    assert main(["generate", "--config", "tiny", f"out_dir={out}", override]) == 2
    assert "graphnerf generate: error:" in capsys.readouterr().err
    assert not out.exists()


def test_unwritable_output_and_foreign_zoo_are_refused(reference, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "zoo"):
        assert main(["generate", "--config", "tiny", f"out_dir={out}"]) == 2
        assert str(blocker) in capsys.readouterr().err
    assert blocker.read_text() == "x"
    with pytest.raises(OSError, match="not a folder"):
        generate(tiny(blocker), echo=False)
    # another seed gives the same ids other rotations: never mixed into one zoo
    with pytest.raises(ZooConfigError, match="made with another plan"):
        generate(tiny(reference, "seed=1"), progress=False, echo=False)


def test_bad_meshes_and_mesh_options_are_clear_errors(tmp_path, capsys):
    garbage = tmp_path / "garbage.obj"
    garbage.write_text("this is not a mesh\n")
    (tmp_path / "empty.ply").write_bytes(b"")
    out = tmp_path / "out.safetensors"
    cases = [
        ([str(garbage)], "garbage.obj"),
        ([str(tmp_path / "empty.ply")], "empty.ply"),
        ([str(tmp_path / "missing.obj")], "missing.obj: no such mesh file"),
        ([str(garbage), "--arch", "nope"], "unknown architecture 'nope'"),
        ([str(garbage), "--rotation", "1,2,3"], "rotation must be"),
        ([str(garbage), "--out", str(tmp_path / "x.pt")], "must end with .safetensors"),
    ]
    for args, match in cases:
        extra = [] if "--out" in args else ["--out", str(out)]
        assert main(["fit-mesh", *args, *extra, "--config", "tiny", "--no-progress"]) == 2, args
        err = capsys.readouterr().err
        assert "graphnerf fit-mesh: error:" in err and match in err, (args, err)
    assert not out.exists()
    assert temp_files(tmp_path) == []


# ----------------------------------------------------------------------------- real meshes
def test_meshes_are_objects_of_class_mesh_split_rotated_and_recorded(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    box = tmp_path / "box.obj"
    trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(box)
    ball = tmp_path / "ball.stl"
    trimesh.creation.icosphere(subdivisions=2).export(ball)
    splits = "splits={train: 0.5, val: 0.0, test: 0.5}"
    cfg = tiny(tmp_path / "zoo", "classes=[chair]", f"meshes=[{box},{ball}]", splits)
    plan = make_plan(cfg)
    meshes = [j for j in plan.jobs if j.class_name == "mesh"]
    assert {j.object for j in meshes} == {"box", "ball"}
    assert {plan.object_splits["box"], plan.object_splits["ball"]} == {"train", "test"}
    for j in meshes:
        assert j.mesh in (str(box), str(ball)) and j.identity()["source"] == j.mesh
        assert j.file.startswith("nerfs/mesh/") and j.id.startswith(j.object + "_r")
    assert all("source" not in j.identity() for j in plan.jobs if j.class_name == "chair")
    # the scene is the mesh, turned by the job's rotation: query(R x) == base.query(x)
    r0 = next(j for j in meshes if j.object == "box" and j.rotation_index == 0)
    r1 = next(j for j in meshes if j.object == "box" and j.rotation_index == 1)
    x = torch.rand(2000, 3) * 1.2 - 0.6
    from graphnerf.scenes import quat_to_matrix

    R = quat_to_matrix(torch.tensor(r1.rotation, dtype=torch.float64)).float()
    s0, s1 = r0.scene(), r1.scene()
    assert bool(s0.occupancy(x).any())
    assert torch.equal(s1.occupancy(x @ R.T), s0.occupancy(x))
    # the same plan again (another process would compute it the same way)
    assert make_plan(cfg).jobs == plan.jobs


def test_generate_a_zoo_of_meshes_only_and_resume_it(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    box = tmp_path / "box.obj"
    trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(box)
    out = tmp_path / "zoo"
    args = ("classes=[]", f"meshes=[{box}]", "archs.train=[mlp]", "archs.test=[mlp]")
    generate(tiny(out, *args), progress=False, echo=False)
    recs = read_manifest(out)
    assert len(recs) == 2 and {r["class"] for r in recs} == {"mesh"}
    assert all(r["source"] == str(box) and r["psnr"] > 10 for r in recs)
    assert load_field(out / recs[0]["file"]).meta["source"] == str(box)
    s = generate(tiny(out, *args), progress=False, echo=False)  # resume: nothing left to fit
    assert s["complete"] and s["run"]["fitted"] == 0 and len(read_manifest(out)) == 2


def test_duplicate_or_non_mesh_sources_are_clear_errors(tmp_path):
    a = tmp_path / "a" / "thing.obj"
    b = tmp_path / "b" / "thing.ply"
    txt = tmp_path / "notes.txt"
    for p in (a, b, txt):
        p.parent.mkdir(exist_ok=True)
        p.write_text("x")
    with pytest.raises(ZooConfigError, match=r"\['thing'\] given more than once"):
        make_plan(tiny(tmp_path / "z", f"meshes=[{a},{b}]"))
    with pytest.raises(ZooConfigError, match="not a mesh file"):
        make_plan(tiny(tmp_path / "z", f"meshes=[{txt}]"))


# ----------------------------------------------------------------------------- CLI
def test_zoo_info_counts_and_missing_files(reference, tmp_path, capsys):
    assert main(["zoo-info", str(reference)]) == 0
    out = capsys.readouterr().out
    assert "12 NeRFs (12 of 12 planned: complete)" in out
    assert "test 8  train 4" in out and "chair 6  table 6" in out and "hash 4  mlp 8" in out
    assert "psnr mean" in out and "MISSING" not in out
    broken = tmp_path / "zoo"
    shutil.copytree(reference, broken)
    gone = read_manifest(broken)[3]["file"]
    (broken / gone).unlink()
    assert main(["zoo-info", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "MISSING: 1 file(s)" in out and gone in out
    assert main(["zoo-info", str(tmp_path / "nothing")]) == 2


def test_fit_mesh_box_and_non_watertight_mesh(tmp_path, capsys):
    trimesh = pytest.importorskip("trimesh")
    box = tmp_path / "box.obj"
    trimesh.creation.box(extents=(1.0, 0.6, 0.4)).export(box)
    out = tmp_path / "fits" / "box.safetensors"
    args = ["fit-mesh", str(box), "--arch", "mlp", "--rotation", "random", "--seed", "3"]
    assert main([*args, "--out", str(out), "--config", "tiny", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    field = load_field(out)
    assert field.meta["arch"] == "mlp" and field.meta["object"] == "box"
    assert isinstance(field.meta["psnr"], float) and f"{field.meta['psnr']:.2f}" in printed
    assert field.meta["rotation"] != [1.0, 0.0, 0.0, 0.0]
    assert abs(sum(v * v for v in field.meta["rotation"]) - 1) < 1e-9

    open_box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    open_box.update_faces(list(range(1, len(open_box.faces))))
    path = tmp_path / "open.obj"
    open_box.export(path)
    cheap = ["fit.distill.common.steps=2", "eval.size=8", "eval.n_samples=8", "eval.iou_res=8"]
    with pytest.warns(UserWarning, match="not watertight"):
        out2 = tmp_path / "o.safetensors"
        opts = ["--config", "tiny", "--no-progress", "--arch", "mlp", "--out", str(out2)]
        code = main(["fit-mesh", *opts, str(path), *cheap])  # options, MESH, overrides
    assert code == 0 and "psnr" in load_field(out2).meta


def test_fit_mesh_takes_a_packaged_real_mesh_by_name(tmp_path, capsys):
    pytest.importorskip("pybullet_data", reason='pip install "graphnerf[meshes]"')
    out = tmp_path / "bunny.safetensors"
    cheap = ["fit.distill.common.steps=30", "eval.size=16", "eval.n_samples=16", "eval.iou_res=16"]
    opts = ["--config", "tiny", "--no-progress", "--arch", "mlp", "--out", str(out)]
    assert main(["fit-mesh", *opts, "bunny", *cheap]) == 0
    meta = load_field(out).meta
    assert meta["object"] == "bunny" and meta["class"] == "mesh"
    assert meta["source"].endswith("bunny.obj") and isinstance(meta["psnr"], float)
    assert main(["fit-mesh", *opts, "teapot", *cheap]) == 2
    assert "nor a packaged real mesh (bunny" in capsys.readouterr().err
