"""Model hub inputs: `hf://org/name[@revision]` resolved to a commit and fetched with `huggingface_hub`.

Only what fingerprinting reads is fetched: the safetensors weights (with their shard index), `config.json`,
`tokenizer.json` and the model card `README.md`; pickled weights, optimizer states and other formats stay on
the hub. The revision (a branch, tag or commit; `main` when none) is resolved once to its commit hash, and
every file is fetched at that commit, so a push to the branch during the download cannot mix two versions.
The commit is what the fingerprint records (`settings.source_revision`) and what the cache is keyed on:
a model already fingerprinted at that commit is not downloaded again.

The fingerprinting pipeline opens a checkpoint as a whole (its layers are read across shards in model
order), so the files go to a temporary folder that is deleted once the fingerprint is made, unless kept
(`keep_downloads`, `lineage refs build --keep DIR`, or `$LINEAGE_HUB_KEEP`). The hub address comes from
`$HF_ENDPOINT` at call time (huggingface_hub reads it only at import), as the tests' local server needs.

`huggingface_hub` is imported only when a hub path is used (it comes with transformers, the `catalog` extra).
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lineage.errors import HubError

HUB_SCHEME = "hf://"
DEFAULT_REVISION = "main"
#: The files fetched: weights, their index, and what the reader and vocabulary code may look at.
FETCH_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "tokenizer.json",
    "README.md",
)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_keep: contextvars.ContextVar[Path | None] = contextvars.ContextVar("lineage_hub_keep", default=None)


@dataclass(frozen=True)
class HubPath:
    """A parsed `hf://org/name[@revision]`.

    Attributes:
        repo_id: `org/name`.
        revision: branch, tag or commit; None for the default branch.
    """

    repo_id: str
    revision: str | None = None

    def __post_init__(self) -> None:
        if not _REPO.match(self.repo_id) or ".." in self.repo_id:
            raise ValueError(f"not a hub repository id: {self.repo_id!r} (expected org/name)")
        if self.revision is not None and (
            not self.revision or ".." in self.revision or not self.revision.isprintable()
        ):
            raise ValueError(f"not a revision: {self.revision!r}")

    @property
    def uri(self) -> str:
        return f"{HUB_SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class HubModel:
    """A hub model resolved to one commit.

    Attributes:
        repo_id: `org/name`.
        revision: what was asked (`main` when nothing was).
        commit: the 40-hex commit hash it resolved to.
        files: the repository files that will be fetched, sorted.
    """

    repo_id: str
    revision: str
    commit: str
    files: tuple[str, ...]

    @property
    def name(self) -> str:
        """The model's name: the repository's (as `huggingface-cli download --local-dir org/name` leaves it)."""
        return self.repo_id.split("/")[-1]

    @property
    def uri(self) -> str:
        return f"{HUB_SCHEME}{self.repo_id}@{self.commit}"

    @property
    def hub_id(self) -> str:
        return f"{self.repo_id}@{self.commit}"


def is_hub_path(path: str | Path) -> bool:
    """Whether `path` is a hub path. `Path("hf://a/b")` collapses to `hf:/a/b`, so both spellings count."""
    return str(path).startswith("hf:/")


def parse_hub_path(path: str | Path) -> HubPath:
    """Parse `hf://org/name[@revision]` (or its `Path`-collapsed `hf:/org/name...`).

    Raises:
        HubError: not of that form.
    """
    text = str(path)
    if not is_hub_path(text):
        raise HubError(f"{text}: not a hub path; write hf://org/name or hf://org/name@revision")
    body = text[len("hf:") :].lstrip("/")
    repo_id, at, revision = body.partition("@")
    try:
        return HubPath(repo_id.rstrip("/"), revision if at else None)
    except ValueError as exc:
        raise HubError(f"{text}: {exc}") from None


def endpoint() -> str | None:
    """The hub address: `$HF_ENDPOINT` now (None lets huggingface_hub use its default)."""
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def resolve(path: str | Path | HubPath) -> HubModel:
    """Ask the hub which commit a revision is and which of its files fingerprinting needs.

    Args:
        path: a hub path.

    Returns:
        The resolved model.

    Raises:
        HubError: unknown repository or revision, hub unreachable, or no safetensors weights.
    """
    hub = path if isinstance(path, HubPath) else parse_hub_path(path)
    api = _api()
    try:
        info = api.model_info(hub.repo_id, revision=hub.revision)
    except Exception as exc:  # noqa: BLE001 - httpx, huggingface_hub and OS errors all end as one line
        raise HubError(f"{hub.uri}: cannot resolve on the hub ({_reason(exc)})") from None
    commit = getattr(info, "sha", None)
    if not commit or not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise HubError(f"{hub.uri}: the hub gave no commit hash for this revision")
    names = sorted(s.rfilename for s in (info.siblings or []))
    files = tuple(n for n in names if any(fnmatch.fnmatch(n, p) for p in FETCH_PATTERNS) and "/" not in n)
    if not any(f.endswith(".safetensors") for f in files):
        raise HubError(
            f"{hub.uri}: no *.safetensors weights at the top of the repository (pickled weights are never "
            "loaded); convert the model to safetensors"
        )
    return HubModel(hub.repo_id, hub.revision or DEFAULT_REVISION, commit, files)


@contextlib.contextmanager
def keep_downloads(folder: str | Path | None) -> Iterator[None]:
    """Within this block, hub files are kept under `folder/org/name` instead of being deleted (None: no change)."""
    token = _keep.set(Path(folder) if folder is not None else _keep.get())
    try:
        yield
    finally:
        _keep.reset(token)


@contextlib.contextmanager
def fetched(model: HubModel) -> Iterator[Path]:
    """The model's files in a local folder for the duration of the block.

    The folder is temporary and deleted on exit, unless downloads are kept (`keep_downloads` or
    `$LINEAGE_HUB_KEEP`), in which case it is `KEEP/org/name` and stays.

    Raises:
        HubError: a file could not be fetched.
    """
    keep = _keep.get() or (Path(os.environ["LINEAGE_HUB_KEEP"]) if os.environ.get("LINEAGE_HUB_KEEP") else None)
    folder = keep / model.repo_id if keep is not None else Path(tempfile.mkdtemp(prefix="lineage-hub-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from huggingface_hub import hf_hub_download

        for name in model.files:
            try:
                hf_hub_download(model.repo_id, name, revision=model.commit, local_dir=str(folder), endpoint=endpoint())
            except Exception as exc:  # noqa: BLE001 - see resolve
                raise HubError(f"{model.uri}: cannot fetch {name} ({_reason(exc)})") from None
        # huggingface_hub's bookkeeping inside local_dir is not part of the model.
        shutil.rmtree(folder / ".cache", ignore_errors=True)
        yield folder
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _api():  # noqa: ANN202 - HfApi, imported lazily
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise HubError("hf:// paths need huggingface_hub: pip install huggingface_hub (or the catalog extra)") from None
    return HfApi(endpoint=endpoint())


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
