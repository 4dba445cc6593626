"""What a model declares it derives from, resolved to the references' lineages.

`lineage.io.declared` reads every place a declaration can be written; this module picks the one that
counts and resolves its ids to the manifest. The strongest source wins: the model card (what the
uploader wrote, what the hub's model tree shows), then `adapter_config.json`, `mergekit_config.yml`, the
GGUF `general.base_model.*` keys. `general.name` and `config.json`'s `_name_or_path` are written by tools
(llama.cpp's converter, transformers' `save_pretrained`), often with the model's own or a training run's
name, so they count only when they name a model of the manifest; otherwise they are ignored rather than
reported as an unverifiable claim nobody made.

A declared id resolves to a manifest row by its `hub_id` (case-insensitive, hub URL and `@revision`
ignored), else by the row's name, else by the repository name alone with punctuation ignored
(`SmolLM2 135M Instruct` ~ `HuggingFaceTB/SmolLM2-135M-Instruct`); a local path (PEFT writes the path the
base was loaded from) resolves to the row whose model is there. A row stands for its lineage: its
`base` column (the root base a derivative descends from; a reference's own name when empty), so a model
that declares an intermediate fine-tune of the manifest is checked against that fine-tune's base.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lineage.io.declared import DeclaredSource, normalize_hub_id, read_declarations
from lineage.refs.manifest import BASE_ROLE, Manifest, ManifestRow

#: Sources written by tools, not by the uploader: they count only when they name a manifest model.
WEAK_SOURCES = ("gguf general.name", "config.json _name_or_path")
_PUNCT = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Declaration:
    """The declaration that counts for one model.

    Attributes:
        source: the `DeclaredSource` chosen, None when nothing is declared.
        ignored: weaker sources that were not used (kept for the report).
    """

    source: DeclaredSource | None
    ignored: tuple[DeclaredSource, ...] = ()

    @property
    def bases(self) -> tuple[str, ...]:
        """The declared ids, as written; () when nothing is declared."""
        return self.source.bases if self.source else ()

    @property
    def relation(self) -> str | None:
        return self.source.relation if self.source else None

    @property
    def where(self) -> str | None:
        """`<source> (<file name>)`, None when nothing is declared."""
        return f"{self.source.source} ({self.source.file.name})" if self.source else None


class ReferenceIndex:
    """Declared ids -> manifest rows, and rows -> the lineage (root base label) they stand for.

    Args:
        manifest: the reference manifest (every row is indexed, references and derivatives alike).
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._by_hub: dict[str, list[ManifestRow]] = {}
        self._by_name: dict[str, list[ManifestRow]] = {}
        self._by_loose: dict[str, list[ManifestRow]] = {}
        for row in manifest.rows:
            keys = [(self._by_name, row.name.lower()), (self._by_loose, _loose(row.name))]
            if row.hub_id:
                hub = normalize_hub_id(row.hub_id)
                keys += [(self._by_hub, hub), (self._by_loose, _loose(hub))]
            for table, key in keys:
                rows = table.setdefault(key, [])
                if row not in rows:
                    rows.append(row)
        self._by_path = {Path(r.path): r for r in manifest.rows}
        refs = manifest.references
        self._reference_paths = {r.path: r for r in refs}
        self._reference_names = {r.name for r in refs}

    def resolve(self, declared: str) -> list[ManifestRow]:
        """The manifest rows a declared id names (strictest match first), [] when none."""
        if declared.startswith(("/", "~")):  # an absolute local path (PEFT writes the path it loaded)
            row = self._by_path.get(Path(declared).expanduser().resolve())
            return [row] if row is not None else []
        key = normalize_hub_id(declared)
        for table, probe in ((self._by_hub, key), (self._by_name, key), (self._by_name, key.rsplit("/", 1)[-1])):
            if probe in table:
                return table[probe]
        return self._by_loose.get(_loose(key), [])

    def lineage_of(self, row: ManifestRow) -> str | None:
        """The root base label a row descends from, None for a model of no reference's lineage."""
        if row.role == BASE_ROLE or not self.manifest.has_role or row.name in self._reference_names:
            return row.base or row.name
        return row.base

    def reference_at(self, path: Path) -> ManifestRow | None:
        """The reference whose model is at `path` (the suspect is a reference itself), else None."""
        return self._reference_paths.get(Path(path).resolve())



def declared_lineage(path: str | Path, index: ReferenceIndex) -> Declaration:
    """Read a model's declarations and pick the one that counts.

    Args:
        path: the model (folder, GGUF file or weights file); a fingerprint file declares nothing.
        index: the manifest's ids, to tell whether a weak source names a known model.

    Returns:
        The declaration; its `source` is None when the model declares nothing.

    Raises:
        CheckpointError: a declaration file that exists but cannot be parsed.
    """
    from lineage.fingerprint.format import is_fingerprint_file

    path = Path(path)
    if is_fingerprint_file(path):
        return Declaration(None)
    found = read_declarations(path)
    for i, source in enumerate(found):
        if source.source in WEAK_SOURCES and not any(index.resolve(b) for b in source.bases):
            continue
        return Declaration(source, tuple(s for j, s in enumerate(found) if j != i))
    return Declaration(None, tuple(found))


def _loose(text: str) -> str:
    # Repository name only, punctuation and case ignored: what a converter's display name keeps of it.
    return _PUNCT.sub("", text.lower().rsplit("/", 1)[-1])
