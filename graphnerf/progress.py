"""One progress mechanism for every long job: a tqdm bar on a terminal, plain lines elsewhere.

``progress(...)`` returns a tqdm-like object (iterate over it, ``.update(n)``,
``.set_postfix(**kv)``, ``with ... as bar``, ``.close()``). When the output stream is a
terminal it *is* a ``tqdm`` bar. Otherwise (a log file, a pipe, CI) it prints one plain line at
most every ``every_s`` seconds and never an escape code or carriage return::

    zoo demo: 120/1000 NeRF, 3.1 NeRF/s, ETA 4m44s, psnr=27.12

plus a last line when it closes (unless ``leave=False`` and it never printed). The environment
variable ``GRAPHNERF_PROGRESS`` forces a mode: ``bar``, ``plain`` or ``off``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

MODES = ("bar", "plain", "off")

# The clock of the plain lines (seconds, monotonic); a module attribute so tests can replace it.
_now = time.monotonic


def _mode(file: IO[str]) -> str:
    forced = os.environ.get("GRAPHNERF_PROGRESS", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"GRAPHNERF_PROGRESS={forced!r}; expected one of {list(MODES)}")
        return forced
    isatty = getattr(file, "isatty", None)
    try:
        return "bar" if isatty is not None and isatty() else "plain"
    except (ValueError, OSError):  # a closed stream
        return "plain"


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    every_s: float = 10.0,
    file: IO[str] | None = None,
    disable: bool = False,
    initial: float = 0,
    leave: bool = True,
    **tqdm_kwargs: Any,
) -> Any:
    """A progress indicator over ``iterable`` (or ``total`` steps counted by ``.update``).

    Args:
        iterable: what to iterate over (its ``len`` is the total when it has one), or None.
        total: number of steps expected (None: unknown; no ETA).
        desc: label at the start of each line.
        unit: the step's name (``it``, ``NeRF``, ``row``, ...).
        every_s: least seconds between two plain lines (not used by the terminal bar).
        file: output stream (default: ``sys.stderr`` at call time).
        disable: show nothing (the object still counts and iterates).
        initial: steps already done (e.g. by an earlier run that is being resumed).
        leave: keep the finished bar (terminal) / print the last line (plain) even if short.
        **tqdm_kwargs: passed to tqdm on a terminal (e.g. ``dynamic_ncols``), ignored otherwise.

    Returns:
        a ``tqdm.tqdm`` on a terminal, else a :class:`PlainProgress`.
    """
    file = sys.stderr if file is None else file
    mode = "off" if disable else _mode(file)
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(
            iterable,
            total=total,
            desc=desc,
            unit=unit,
            file=file,
            initial=initial,
            leave=leave,
            **tqdm_kwargs,
        )
    return PlainProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        every_s=every_s,
        file=file,
        disable=mode == "off",
        initial=initial,
        leave=leave,
    )


def format_seconds(s: float) -> str:
    """``42s``, ``4m05s``, ``2h03m``: a duration for a log line."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _fmt_count(n: float) -> str:
    return f"{n:g}" if isinstance(n, float) and not n.is_integer() else f"{int(n)}"


class PlainProgress:
    """Progress as plain text lines, for streams that are not terminals (see :func:`progress`).

    Attributes:
        n: steps done so far (``initial`` included).
        total: steps expected, or None.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str = "",
        unit: str = "it",
        every_s: float = 10.0,
        file: IO[str] | None = None,
        disable: bool = False,
        initial: float = 0,
        leave: bool = True,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.every_s = float(every_s)
        self.file = sys.stderr if file is None else file
        self.disable = disable
        self.leave = leave
        self.n = initial
        self._initial = initial
        self._postfix = ""
        self._start = _now()
        self._last = self._start  # the first line comes every_s after the start
        self._printed = 0
        self._closed = False

    # -- tqdm-like interface --------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("progress(): nothing to iterate over (pass an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress(): the total is unknown")
        return int(self.total)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Count ``n`` more steps; print a line if ``every_s`` seconds passed since the last."""
        self.n += n
        if self.disable or self._closed:
            return
        now = _now()
        if now - self._last >= self.every_s:
            self._print(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Values shown after the rate as ``key=value`` (floats with 4 significant digits)."""
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()
        )

    def set_postfix_str(self, s: str = "") -> None:
        self._postfix = str(s)

    def set_description(self, desc: str | None = None) -> None:
        self.desc = desc or ""

    def write(self, s: str) -> None:
        """Print a message line (tqdm's ``bar.write`` without a bar to step around)."""
        if not self.disable:
            print(s, file=self.file, flush=True)

    def refresh(self) -> None:
        """Print the current line now."""
        if not self.disable and not self._closed:
            self._print(_now())

    def close(self) -> None:
        """Print the last line (see ``leave``); further updates count but print nothing."""
        if self._closed:
            return
        self._closed = True
        if not self.disable and (self.leave or self._printed):
            self._print(_now(), final=True)

    # -- formatting -----------------------------------------------------------------------
    def line(self, now: float | None = None, final: bool = False) -> str:
        """The text of one progress line at time ``now`` (default: the clock)."""
        now = _now() if now is None else now
        elapsed = max(now - self._start, 0.0)
        done = self.n - self._initial
        parts = [
            f"{_fmt_count(self.n)}/{_fmt_count(self.total)} {self.unit}"
            if self.total is not None
            else f"{_fmt_count(self.n)} {self.unit}"
        ]
        rate = done / elapsed if elapsed > 0 else math.nan
        if rate > 0 and math.isfinite(rate):
            parts.append(
                f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}"
            )
        if final:
            stopped = self.total is not None and self.n < self.total
            parts.append(f"{'stopped after' if stopped else 'done in'} {format_seconds(elapsed)}")
        elif self.total is not None and rate > 0 and math.isfinite(rate) and self.n < self.total:
            parts.append(f"ETA {format_seconds((self.total - self.n) / rate)}")
        if self._postfix:
            parts.append(self._postfix)
        head = f"{self.desc}: " if self.desc else ""
        return head + ", ".join(parts)

    def _print(self, now: float, final: bool = False) -> None:
        print(self.line(now, final), file=self.file, flush=True)
        self._last = now
        self._printed += 1
