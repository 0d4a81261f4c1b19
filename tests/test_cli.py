"""The `graphnerf` command line (the demo: tests/test_demo.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import graphnerf
import graphnerf.data
import graphnerf.scenes
from graphnerf.cli import main


@pytest.fixture()
def hash_file(tmp_path):
    field = graphnerf.build_field("hash", seed=1)
    return graphnerf.save_field(
        field,
        tmp_path / "h.safetensors",
        object_id="obj_7",
        rotation=[1.0, 0.0, 0.0, 0.0],
        psnr=31.5,
    )


def test_info_prints_architecture_counts_and_metadata(hash_file, capsys):
    assert main(["info", str(hash_file)]) == 0
    out = capsys.readouterr().out
    assert "architecture  hash" in out
    assert "encoding.params" in out and "32,768" in out and "10,240" in out and "43,008" in out
    assert "[16, 32, 64, 128]" in out  # level resolutions
    assert "obj_7" in out and "31.5" in out


def test_info_reads_tcnn_pth(tmp_path, capsys):
    params = graphnerf.io.export_tcnn(graphnerf.build_field("triplane", seed=0))
    path = tmp_path / "nerf_weights.pth"
    torch.save({k: v.half() for k, v in params.items()}, path)
    assert main(["info", str(path)]) == 0
    assert "architecture  triplane" in capsys.readouterr().out


def test_bad_file_gives_clear_error_and_exit_code(tmp_path, capsys):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "graphnerf info: error:" in err and "x.safetensors" in err


def test_render_writes_png(hash_file, tmp_path):
    out = tmp_path / "r.png"
    assert (
        main(["render", str(hash_file), "--out", str(out), "--size", "12", "--samples", "8"]) == 0
    )
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[:2] == (12, 12)


def test_graph_command_writes_loadable_graph(hash_file, tmp_path, capsys):
    out = tmp_path / "g.pt"
    assert main(["graph", str(hash_file), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    g = graphnerf.graph.load_graph(out)
    assert str(g.edge_index.shape[1]) in text.replace(",", "")
    same = graphnerf.from_graph(g)
    x = torch.rand(64, 3) - 0.5
    assert torch.equal(same(x)[0], graphnerf.load_field(hash_file)(x)[0])


def test_fit_mesh_help_documents_up():
    text = " ".join(_help("fit-mesh").split())
    assert "--up {z,y}" in text and "OBJ, glTF/GLB: y" in text


def _help(command: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "graphnerf.cli", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout


def test_render_checks_the_output_path_before_rendering(tmp_path, capsys):
    """The checks come first: the input file does not even exist here."""
    missing = str(tmp_path / "missing.safetensors")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out, match in [
        (tmp_path / "x.gif", "extension '.gif'; supported: .png, .jpg, .jpeg"),
        (tmp_path / "noext", "extension '(none)'"),
        (blocker / "x.png", "cannot write in"),  # its folder would be a file
        (tmp_path, "extension '(none)'"),
    ]:
        assert main(["render", missing, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "graphnerf render: error:" in err and match in err, err
        assert "missing.safetensors" not in err
    assert main(["graph", missing, "--out", str(tmp_path / "g.png")]) == 2
    assert "supported: .pt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "suffix,magic", [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8\xff"), (".JPEG", b"\xff\xd8\xff")]
)
def test_render_writes_the_format_its_extension_names(hash_file, tmp_path, suffix, magic):
    out = tmp_path / f"sub/r{suffix}"
    args = ["render", str(hash_file), "--out", str(out), "--size", "12", "--samples", "8"]
    assert main(args) == 0
    assert out.read_bytes().startswith(magic)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no probe or temp file left


def test_scenes_contact_sheet(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert (
        main(
            [
                "scenes",
                "--out",
                str(out),
                "--classes",
                "chair",
                "lamp",
                "--seeds",
                "2",
                "--size",
                "12",
                "--samples",
                "8",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0 and "2 classes x 2 seeds" in capsys.readouterr().out
    assert main(["scenes", "--out", str(out), "--classes", "spaceship"]) == 2


def test_console_script_help():
    r = subprocess.run(
        [sys.executable, "-m", "graphnerf.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for sub in ("demo", "info", "render", "graph", "generate", "fit-mesh", "zoo-info", "scenes"):
        assert sub in r.stdout


def test_fit_mesh_says_which_up_axis_and_why():
    from graphnerf.cli import _up_axis_note

    assert _up_axis_note("scan.OBJ", None).startswith("y (the .obj convention")
    assert _up_axis_note("part.stl", None).startswith("z (the .stl convention")
    assert _up_axis_note("duck", None) == "y (the packaged mesh's)"
    assert _up_axis_note("scan.obj", "z") == "z (--up)"
