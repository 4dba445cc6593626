"""What a model's own files say it derives from: the declared lineage, read but not judged.

A model hub's only lineage record is what the uploader wrote, and it is written in several places: the
model card's YAML front matter (`base_model`, a string or a list, and `base_model_relation`, as the
Hugging Face model tree reads them), a PEFT adapter's `adapter_config.json` (`base_model_name_or_path`),
a mergekit `mergekit_config.yml` (`base_model`, `models[].model`, `slices[].sources[].model`), a GGUF
file's `general.base_model.N.*` keys (and `general.name`, which llama.cpp's converter fills from the
source model), and transformers' `config.json` `_name_or_path`. This module reads each of them and
returns them in that order, strongest first; `lineage.verify.declarations` decides which one counts.

YAML is parsed with `yaml.safe_load` (PyYAML comes with transformers and huggingface_hub): plain data
only, never object construction. Every file is optional, and a malformed one is a one-line error naming
it, since a declaration that cannot be read must not pass for "nothing declared".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.errors import CheckpointError
from lineage.io.constants import ADAPTER_CONFIG, CONFIG_FILE, GGUF_SUFFIX
from lineage.io.jsonfile import read_json_object

MODEL_CARD = "README.md"
MERGEKIT_CONFIG = "mergekit_config.yml"

HUB_URL_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "hf://", "hf.co/", "huggingface.co/")
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(?P<yaml>.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
# A hub id is `name` or `org/name`; anything else in `_name_or_path` is a local path, which says nothing.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class DeclaredSource:
    """One place that declares a base.

    Attributes:
        source: where it was read: `model card`, `adapter_config.json`, `mergekit_config.yml`, `gguf
            general.base_model`, `gguf general.name`, `config.json _name_or_path`.
        file: the file it was read from.
        bases: the declared base ids, as written (order kept, duplicates removed).
        relation: `base_model_relation` (model card), `adapter` / `merge` / `quantized` where the file
            kind implies it, else None.
    """

    source: str
    file: Path
    bases: tuple[str, ...]
    relation: str | None = None

    def __post_init__(self) -> None:
        if not self.bases:
            raise ValueError("a declaration names at least one base")


def normalize_hub_id(text: str) -> str:
    """The comparable form of a hub id: lower case, hub URL prefix, `@revision` and slashes trimmed.

    Args:
        text: `Org/Name`, `https://huggingface.co/Org/Name`, `org/name@main`...

    Returns:
        `org/name`.

    Example:
        >>> normalize_hub_id("https://huggingface.co/HuggingFaceTB/SmolLM2-135M@main")
        'huggingfacetb/smollm2-135m'
    """
    value = text.strip()
    lowered = value.lower()
    for prefix in HUB_URL_PREFIXES:
        if lowered.startswith(prefix):
            value = value[len(prefix) :]
            break
    value = value.split("@", 1)[0].split("?", 1)[0].strip("/")
    # A URL to a file or tree of the repository (`org/name/tree/main`, `org/name/blob/...`) names the repo.
    parts = value.split("/")
    if len(parts) > 2 and parts[2] in ("tree", "blob", "resolve"):
        value = "/".join(parts[:2])
    return value.lower()


def read_declarations(path: str | Path) -> list[DeclaredSource]:
    """Read every declaration of a model, strongest first.

    Args:
        path: a model folder, a `.gguf` file, or a weights file (its folder is read).

    Returns:
        The declarations found (model card, adapter config, mergekit config, GGUF metadata, config.json),
        in that order; empty when the model declares nothing.

    Raises:
        CheckpointError: a model card, YAML or JSON file that exists but cannot be parsed.

    Example:
        >>> [d.source for d in read_declarations("models/my-finetune")]  # doctest: +SKIP
        ['model card', 'config.json _name_or_path']
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    found: list[DeclaredSource | None] = [
        _model_card(folder / MODEL_CARD),
        _adapter_config(folder / ADAPTER_CONFIG),
        _mergekit(folder / MERGEKIT_CONFIG),
    ]
    ggufs = [path] if path.suffix == GGUF_SUFFIX else sorted(folder.glob(f"*{GGUF_SUFFIX}")) if path.is_dir() else []
    if ggufs:
        found.extend(_gguf(ggufs[0]))
    found.append(_name_or_path(folder / CONFIG_FILE))
    return [d for d in found if d is not None]


def front_matter(path: Path) -> dict[str, Any]:
    """The YAML front matter of a model card, {} when it has none.

    Raises:
        CheckpointError: the front matter is not valid YAML or not a mapping.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"cannot read the model card ({exc})") from exc
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}
    try:
        data = yaml.safe_load(match["yaml"])
    except yaml.YAMLError as exc:
        raise CheckpointError(path, f"model card front matter is not valid YAML ({_first_line(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckpointError(path, f"model card front matter is a YAML {type(data).__name__}, not a mapping")
    return data


def card_licence(path: str | Path) -> str | None:
    """The `license` a model's card declares in its front matter (None: no card, or no licence in it).

    Args:
        path: a model folder, a `.gguf` file or a weights file (its folder's card is read).

    Raises:
        CheckpointError: a card whose front matter is not valid YAML or not a mapping.
    """
    path = Path(path)
    card = (path if path.is_dir() else path.parent) / MODEL_CARD
    if not card.is_file():
        return None
    value = front_matter(card).get("license")
    return str(value).strip() or None if value else None


def _model_card(path: Path) -> DeclaredSource | None:
    if not path.is_file():
        return None
    data = front_matter(path)
    bases = _strings(data.get("base_model"))
    relation = data.get("base_model_relation")
    if not bases:
        return None
    return DeclaredSource("model card", path, bases, str(relation).strip().lower() if relation else None)


def _adapter_config(path: Path) -> DeclaredSource | None:
    if not path.is_file():
        return None
    bases = _strings(_json(path).get("base_model_name_or_path"))
    return DeclaredSource("adapter_config.json", path, bases, "adapter") if bases else None


def _mergekit(path: Path) -> DeclaredSource | None:
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(path, f"mergekit config is not readable YAML ({_first_line(exc)})") from exc
    if not isinstance(data, dict):
        return None
    names: list[Any] = [data.get("base_model")]
    for entry in data.get("models") or []:
        names.append(entry.get("model") if isinstance(entry, dict) else entry)
    for piece in data.get("slices") or []:
        for src in (piece.get("sources") or []) if isinstance(piece, dict) else []:
            names.append(src.get("model") if isinstance(src, dict) else None)
    bases = _strings(names)
    return DeclaredSource("mergekit_config.yml", path, bases, "merge") if bases else None


def _gguf(path: Path) -> list[DeclaredSource]:
    """`general.base_model.N.repo_url` (else `.organization/.name`), and `general.name` as a weaker claim."""
    fields = gguf_metadata(path, prefix="general.")
    count = fields.get("general.base_model.count")
    bases: list[Any] = []
    for i in range(int(count) if isinstance(count, int) and 0 < count < 1000 else 0):
        key = f"general.base_model.{i}"
        url, org, name = (fields.get(f"{key}.{k}") for k in ("repo_url", "organization", "name"))
        if isinstance(url, str) and url.strip():
            bases.append(url)
        elif isinstance(name, str) and name.strip():
            bases.append(f"{org}/{name}" if isinstance(org, str) and org.strip() else name)
    out = []
    if _strings(bases):
        out.append(DeclaredSource("gguf general.base_model", path, _strings(bases), "quantized"))
    name = fields.get("general.name")
    if isinstance(name, str) and name.strip():
        out.append(DeclaredSource("gguf general.name", path, (name.strip(),), "quantized"))
    return out


def gguf_metadata(path: Path, prefix: str = "") -> dict[str, Any]:
    """The GGUF metadata keys starting with `prefix`, as Python values (strings, numbers, lists).

    Raises:
        CheckpointError: the file is not a readable GGUF file.
    """
    try:  # lineage's own validating header parser, where this checkout has it
        from lineage.io.gguf_header import read_gguf_header
    except ImportError:
        read_gguf_header = None
    if read_gguf_header is not None:
        return {k: v for k, v in read_gguf_header(path).metadata.items() if k.startswith(prefix)}
    try:
        from gguf import GGUFReader
    except ImportError as exc:  # gguf is a dependency of transformers' GGUF loading, not of lineage itself
        raise CheckpointError(path, "reading GGUF metadata needs the gguf package: pip install gguf") from exc
    try:
        reader = GGUFReader(path)
        return {k: f.contents() for k, f in reader.fields.items() if k.startswith(prefix)}
    except Exception as exc:  # noqa: BLE001 - gguf-py raises ValueError, struct.error, IndexError... on bad files
        raise CheckpointError(path, f"not a readable GGUF file ({type(exc).__name__}: {_first_line(exc)})") from exc


def _name_or_path(path: Path) -> DeclaredSource | None:
    if not path.is_file():
        return None
    value = _json(path).get("_name_or_path")
    if not isinstance(value, str) or not _HUB_ID.match(value.strip()):
        return None  # absent, or a local path (transformers writes whatever path it loaded from)
    return DeclaredSource("config.json _name_or_path", path, (value.strip(),))


def _json(path: Path) -> dict[str, Any]:
    return read_json_object(path, CheckpointError, "not valid JSON", "re-download it")


def _strings(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and item.strip() and item.strip() not in out:
            out.append(item.strip())
    return tuple(out)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
