"""The README's (and docs/'s) code runs as written.

* every ```python block of README.md and docs/*.md is run as a script in a fresh temporary folder (one thread,
  a separate process, nothing prepared beforehand: a snippet that reads a file writes it itself);
  a block preceded by ``<!-- slow-snippet -->`` runs only with ``pytest -m slow``;
* every ``graphnerf ...`` command the README shows (in shell blocks and inline) names a real
  subcommand and parses with the real argument parser;
* the cheap ones run for real on a file the test writes: each subcommand's ``--help``, ``info``,
  ``graph`` and ``zoo-info``. Zoo generation and fitting commands are only parsed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import graphnerf
from graphnerf.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SLOW_MARK = "<!-- slow-snippet -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str, path: Path = README) -> list[tuple[int, str, bool]]:
    """``(line number, code, slow)`` of each fenced block of language ``lang`` in ``path``."""
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) != lang:
            continue
        before = text[: m.start()].rstrip().splitlines()
        slow = bool(before) and before[-1].strip() == SLOW_MARK
        out.append((text.count("\n", 0, m.start()) + 1, m.group(2), slow))
    return out


def _params(lang: str) -> list:
    return [
        pytest.param(code, id=f"{path.name}:{line}", marks=[pytest.mark.slow] if slow else [])
        for path in (README, *DOCS)
        for line, code, slow in _blocks(lang, path)
    ]


def test_readme_has_python_snippets():
    assert len(_blocks("python")) >= 2


@pytest.mark.parametrize("code", _params("python"))
def test_python_snippet_runs(code, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the installed package, as a reader has it
    script = tmp_path / "snippet.py"
    script.write_text(code)
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"snippet failed:\n{code}\n--- stderr ---\n{r.stderr[-4000:]}"


# ----------------------------------------------------------------------------- commands
def _commands() -> list[str]:
    """Every ``graphnerf ...`` command in the README: shell-block lines and inline code."""
    text = README.read_text()
    cmds = []
    for _, code, _ in _blocks("bash"):
        for line in code.splitlines():
            line = line.split("  #")[0].split(" # ")[0]
            for part in re.split(r"&&|\|\||;|(?<!&)&(?!&)", line):
                part = part.strip()
                if part.startswith("graphnerf"):
                    cmds.append(part)
    prose = FENCE.sub("", text)
    cmds += [m.group(1) for m in re.finditer(r"`(graphnerf [^`]+)`", prose)]
    return cmds


def _argv(cmd: str, file: str, zoo: str) -> list[str]:
    """The command's arguments with the README's placeholders filled in."""
    return [{"FILE": file, "DIR": zoo, "MESH": "duck"}.get(a, a) for a in shlex.split(cmd)[1:]]


def test_readme_shows_every_subcommand():
    shown = {shlex.split(c)[1] for c in _commands() if len(shlex.split(c)) > 1}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = sorted(set(sub.choices) - shown)
    assert not missing, f"README never shows `graphnerf {missing[0]}`"


def test_readme_commands_parse(tmp_path):
    parser = build_parser()
    cmds = _commands()
    assert len(cmds) >= 10
    for cmd in cmds:
        argv = _argv(cmd, str(tmp_path / "x.safetensors"), str(tmp_path))
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # argparse's way of failing (or of --help)
            assert e.code == 0, f"README command does not parse: {cmd}"


def test_cheap_readme_commands_run(tmp_path, capsys, monkeypatch):
    """info / graph / zoo-info / --help as the README shows them, on files written here."""
    monkeypatch.chdir(tmp_path)  # the README's relative paths (`zoo`) land here
    field = graphnerf.build_field("mlp", seed=0)
    file = graphnerf.save_field(field, tmp_path / "nerf.safetensors", object_id="readme")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "manifest.jsonl").write_text("")
    ran = set()
    for cmd in _commands():
        argv = _argv(cmd, str(file), str(zoo))
        if argv and argv[0] in ("info", "graph", "zoo-info") and "--help" not in argv:
            assert main(argv) == 0, f"README command failed: {cmd}\n{capsys.readouterr().err}"
            ran.add(argv[0])
    assert ran == {"info", "graph", "zoo-info"}
    out = capsys.readouterr().out
    assert "architecture  mlp" in out and "wrote" in out
    for sub in {shlex.split(c)[1] for c in _commands() if len(shlex.split(c)) > 1}:
        if sub.startswith("-"):
            continue
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([sub, "--help"])
        assert e.value.code == 0
