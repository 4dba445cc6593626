"""Progress on stderr: bars on a terminal, one plain line per model elsewhere, nothing when asked.

On a terminal (stderr is a TTY) the model bar and the byte bar of tqdm redraw in place. Anywhere else (a
log file, a pipe, CI) redrawing leaves `\\r`, cursor-up escapes and lines of spaces, so each model gets one
plain line instead when it is done: `fingerprint 3/8  llama-8b-ft-email  cached  0.0s`. `--quiet`, or
`LINEAGE_NO_PROGRESS=1` in the environment, turns progress off (errors are still printed). With
`LINEAGE_DEBUG=1` a model that fails inside a batch also prints its traceback, as it happens.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

BARS, LINES, OFF = "bars", "lines", "off"
NO_PROGRESS_ENV = "LINEAGE_NO_PROGRESS"
DEBUG_ENV = "LINEAGE_DEBUG"


def progress_mode(disable: bool = False) -> str:
    """`off` with --quiet or LINEAGE_NO_PROGRESS, `bars` when stderr is a terminal, else `lines`."""
    if disable or os.environ.get(NO_PROGRESS_ENV):
        return OFF
    isatty = getattr(sys.stderr, "isatty", None)
    return BARS if isatty is not None and isatty() else LINES


def say(text: str) -> None:
    """One line on stderr, now (a log must show each model as it finishes, not at exit)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _tqdm(**kwargs: object) -> tqdm:
    """A tqdm bar on stderr (tqdm imported here: `--version` and `--help` never load it)."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr, on a terminal only (elsewhere a disabled one: a no-op to update)."""
    return _tqdm(
        total=total,
        desc=desc,
        unit="model",
        disable=progress_mode(disable) != BARS,
    )


def ticker(bar: tqdm) -> Callable[[int, int, str], None]:
    """A library progress callback `(done, total, name)` that advances `bar` (the total is known only once the
    paths are expanded, so it is set on every call)."""

    def tick(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name[:40], refresh=False)
        bar.update(1)

    return tick


class ScanProgress:
    """The library's progress callback for fingerprinting jobs: two bars on a terminal, lines elsewhere.

    The model bar counts models with fingerprinted / cached / failed counts in its postfix (tqdm shows the
    rate); under it a byte bar shows the weights streamed, so a 70B model shows MB and an ETA instead of
    a silent "0/1". The byte bar appears with the first model actually fingerprinted (a scan served from
    the cache has none); with parallel workers it sums the models in flight. Off a terminal each model is
    one line: `<desc> <done>/<total>  <name>  <fingerprinted|cached|loaded|failed>  <seconds>s`.

    Args:
        desc: the label of the bar and of each line.
        disable: no progress (--quiet; LINEAGE_NO_PROGRESS=1 too).
        mode: `bars`, `lines` or `off`; chosen from the terminal and the environment when None.
    """

    def __init__(self, desc: str = "fingerprint", disable: bool = False, mode: str | None = None) -> None:
        self.mode = mode or progress_mode(disable)
        self.desc = desc
        self.models = _tqdm(total=0, desc=desc, unit="model", disable=self.mode != BARS)
        self.bytes: tqdm | None = None
        self.counts = {"fingerprinted": 0, "cached": 0, "loaded": 0, "failed": 0}
        self._streaming: dict[str, tuple[int, int]] = {}  # model -> (bytes done, bytes total)
        self._last: tuple[str, float] | None = None  # (how, seconds) of the model just finished

    def __call__(self, done: int, total: int, name: str) -> None:
        if self.mode == LINES:
            how, seconds = self._last or ("done", 0.0)
            say(f"{self.desc} {done}/{total}  {name}  {how}  {seconds:.1f}s")
        self._last = None
        self.models.total = total
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items() if v or k != "loaded")
        self.models.set_postfix_str(f"{counts} {name[:30]}", refresh=False)
        self.models.update(1)

    def finished(self, outcome) -> None:  # noqa: ANN001 - a ModelOutcome
        """Count how the model went; close its share of the byte bar; show a failure's traceback when
        LINEAGE_DEBUG is set."""
        key = (getattr(outcome, "how", None) or "fingerprinted") if outcome.ok else "failed"
        self.counts[key] = self.counts.get(key, 0) + 1
        self._last = (key, float(getattr(outcome, "seconds", 0.0) or 0.0))
        if not outcome.ok and os.environ.get(DEBUG_ENV) and getattr(outcome, "trace", None):
            say(f"traceback of {outcome.name}:\n{outcome.trace}")
        for name in [outcome.name] + [n for n, (d, t) in self._streaming.items() if d >= t]:
            done, total = self._streaming.pop(name, (0, 0))
            if self.bytes is not None and total > done:
                self.bytes.update(total - done)  # a failed model's unread bytes: the bar must still end

    def weights(self, name: str, done: int, total: int) -> None:
        """`done` of `total` weight bytes of model `name` streamed."""
        if self.mode != BARS:
            return
        if self.bytes is None:
            self.bytes = _tqdm(total=0, desc="weights", unit="B", unit_scale=True, unit_divisor=1024, position=1)
        before, known = self._streaming.get(name, (0, 0))
        if known == 0:
            self.bytes.total += total
        self._streaming[name] = (done, total)
        if done > before:
            self.bytes.update(done - before)

    def close(self) -> None:
        if self.bytes is not None:
            self.bytes.close()
        self.models.close()

    def __enter__(self) -> ScanProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
