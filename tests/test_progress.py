"""graphnerf.progress: a tqdm bar on a terminal, throttled plain lines (no escape codes) elsewhere."""

from __future__ import annotations

import io

import pytest

import graphnerf.progress as gp
from graphnerf.progress import PlainProgress, format_seconds, progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(gp, "_now", c)
    monkeypatch.delenv("GRAPHNERF_PROGRESS", raising=False)
    return c


def test_plain_lines_are_throttled_and_have_no_escape_codes(clock: FakeClock) -> None:
    out = io.StringIO()
    bar = progress(total=1000, desc="fit", unit="step", every_s=10.0, file=out)
    assert isinstance(bar, PlainProgress)
    for _ in range(1000):  # 1000 steps, 0.1 s each = 100 s: one line per 10 s at most
        clock.t += 0.1
        bar.update()
        bar.set_postfix(loss=0.123456)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert 9 <= len(lines) <= 11  # ~10 periodic lines + the final one, not 1000
    assert "\x1b" not in text and "\r" not in text
    assert lines[0] == "fit: 100/1000 step, 10 step/s, ETA 1m30s, loss=0.1235"
    assert lines[-1] == "fit: 1000/1000 step, 10 step/s, done in 1m40s, loss=0.1235"


def test_plain_rate_counts_only_this_runs_steps_and_slow_units(clock: FakeClock) -> None:
    out = io.StringIO()
    with progress(total=10, initial=4, desc="zoo", unit="NeRF", every_s=0, file=out) as bar:
        clock.t += 5.0
        bar.update(1)  # 1 NeRF in 5 s: a resumed run's first 4 are not in the rate
    lines = out.getvalue().splitlines()
    assert lines[0] == "zoo: 5/10 NeRF, 5 s/NeRF, ETA 25s"
    assert lines[-1] == "zoo: 5/10 NeRF, 5 s/NeRF, stopped after 5s"


def test_plain_iterates_and_closes(clock: FakeClock) -> None:
    out = io.StringIO()
    seen = [x for x in progress(range(5), desc="views", unit="view", file=out)]
    assert seen == list(range(5))
    assert out.getvalue().splitlines() == ["views: 5/5 view, done in 0s"]


def test_short_transient_bar_prints_nothing(clock: FakeClock) -> None:
    out = io.StringIO()
    with progress(total=3, desc="batch", file=out, leave=False) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    with progress(total=3, desc="off", file=out, disable=True) as bar:
        clock.t += 100
        bar.update(3)
    assert out.getvalue() == "" and bar.n == 3


def test_terminal_gets_a_tqdm_bar(clock: FakeClock) -> None:
    from tqdm import tqdm

    out = TTY()
    bar = progress(range(3), desc="x", file=out)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]


def test_environment_forces_the_mode(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHNERF_PROGRESS", "plain")
    assert isinstance(progress(total=1, file=TTY()), PlainProgress)
    monkeypatch.setenv("GRAPHNERF_PROGRESS", "off")
    out = TTY()
    with progress(total=1, file=out) as bar:
        bar.update()
    assert out.getvalue() == ""
    monkeypatch.setenv("GRAPHNERF_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="GRAPHNERF_PROGRESS"):
        progress(total=1, file=out)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (3.4, 65, 3600 * 2 + 180)] == ["3s", "1m05s", "2h03m"]
