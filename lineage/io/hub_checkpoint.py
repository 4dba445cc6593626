"""A model hub model read as a checkpoint: resolved to a commit, fetched, then read as the folder it became.

`HubCheckpoint` is a `Checkpoint` like the others: it resolves `hf://org/name[@revision]` (unless given a
`HubModel` already resolved), fetches the files fingerprinting reads into a temporary folder
(`lineage.io.hub.fetched`), and serves that folder's safetensors reader under the repository's name. The
folder is deleted when the checkpoint is closed, unless downloads are kept (`keep_downloads`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch

from lineage.io.checkpoint import Checkpoint
from lineage.io.hub import HubModel, fetched, resolve
from lineage.io.reader import CheckpointReader
from lineage.io.vocab import Vocabulary


class HubCheckpoint(Checkpoint):
    """Lazy, read-only view of a hub model's safetensors weights at one commit.

    Args:
        model: `hf://org/name[@revision]`, or a `HubModel` resolved to its commit.

    Attributes:
        hub: the resolved model (repository, commit, files).

    Raises:
        HubError: the repository or revision cannot be resolved, or a file cannot be fetched.
        CheckpointError: the fetched files are not a usable checkpoint.

    Example:
        >>> with HubCheckpoint("hf://HuggingFaceTB/SmolLM2-135M") as ckpt:  # doctest: +SKIP
        ...     ckpt.hub.commit, len(ckpt)
    """

    def __init__(self, model: str | Path | HubModel) -> None:
        self.hub = model if isinstance(model, HubModel) else resolve(model)
        self._stack = ExitStack()
        try:
            folder = self._stack.enter_context(fetched(self.hub))
            self._local = self._stack.enter_context(CheckpointReader(folder))
        except BaseException:
            self._stack.close()
            raise
        self.folder: Path = self._local.folder
        self.name: str = self.hub.name
        self.files: tuple[Path, ...] = self._local.files
        self.config = self._local.config
        self._infos = self._local._infos
        self._closed = False

    def _read_vocabulary(self) -> Vocabulary | None:
        return self._local.vocabulary

    def header_sha256(self) -> str:
        """The fetched folder's header hash (`CheckpointReader.header_sha256`)."""
        return self._local.header_sha256()

    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        return self._local.tensor(name, dtype=dtype, check_finite=check_finite)

    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        return self._local.row_blocks(name, max_bytes, dtype=dtype, check_finite=check_finite)

    def rows(
        self, name: str, index: Sequence[int] | torch.Tensor, *, dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:  # fmt: skip
        return self._local.rows(name, index, dtype=dtype, check_finite=check_finite)

    def prefetch(self, names: Iterable[str]) -> None:
        self._local.prefetch(names)

    def close(self) -> None:
        """Close the reader and delete the fetched files (unless downloads are kept)."""
        self._stack.close()
        self._closed = True

    def __repr__(self) -> str:
        return f"HubCheckpoint({self.hub.uri!r}: {len(self._infos)} tensors)"
