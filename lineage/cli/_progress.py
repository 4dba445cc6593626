"""Progress bars on stderr (tqdm), off when asked or when stderr is not a terminal and CI is set."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm


def _off(disable: bool) -> bool:
    return disable or bool(os.environ.get("LINEAGE_NO_PROGRESS"))


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr; disabled with --quiet or LINEAGE_NO_PROGRESS=1."""
    return tqdm(
        total=total, desc=desc, unit="model", file=sys.stderr, disable=_off(disable), leave=False, dynamic_ncols=True
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
    """The library's progress callback for fingerprinting jobs, drawn as two bars.

    The model bar counts models with fingerprinted / cached / failed counts in its postfix (tqdm shows the
    rate); under it a byte bar shows the weights streamed, so a 70B model shows MB and an ETA instead of
    a silent "0/1". The byte bar appears with the first model actually fingerprinted (a scan served from
    the cache has none); with parallel workers it sums the models in flight.

    Args:
        desc: the model bar's label.
        disable: no bars (--quiet; LINEAGE_NO_PROGRESS=1 too).
    """

    def __init__(self, desc: str = "fingerprint", disable: bool = False) -> None:
        self._off = _off(disable)
        self.models = tqdm(
            total=0, desc=desc, unit="model", file=sys.stderr, disable=self._off, leave=False, dynamic_ncols=True
        )
        self.bytes: tqdm | None = None
        self.counts = {"fingerprinted": 0, "cached": 0, "loaded": 0, "failed": 0}
        self._streaming: dict[str, tuple[int, int]] = {}  # model -> (bytes done, bytes total)

    def __call__(self, done: int, total: int, name: str) -> None:
        self.models.total = total
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items() if v or k != "loaded")
        self.models.set_postfix_str(f"{counts} {name[:30]}", refresh=False)
        self.models.update(1)

    def finished(self, outcome) -> None:  # noqa: ANN001 - a ModelOutcome (or a FingerprintOutcome: no `how`)
        """Count how the model went; close its share of the byte bar."""
        key = (getattr(outcome, "how", None) or "fingerprinted") if outcome.ok else "failed"
        self.counts[key] = self.counts.get(key, 0) + 1
        for name in [outcome.name] + [n for n, (d, t) in self._streaming.items() if d >= t]:
            done, total = self._streaming.pop(name, (0, 0))
            if self.bytes is not None and total > done:
                self.bytes.update(total - done)  # a failed model's unread bytes: the bar must still end

    def weights(self, name: str, done: int, total: int) -> None:
        """`done` of `total` weight bytes of model `name` streamed."""
        if self._off:
            return
        if self.bytes is None:
            self.bytes = tqdm(
                total=0,
                desc="weights",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
                position=1,
            )
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
