"""The `Fingerprint` type and its file format.

A fingerprint file is a safetensors file (no pickle, self-describing, memory-mappable): the arrays are
its tensors, and everything else (schema version, lineage version, probe settings and seeds, device,
model summary, the 15 TensorGuard features) is one JSON document in the header's metadata. Writing the
same fingerprint twice gives byte-identical files, so a file's hash can serve as a cache key.

The anchors are the model's own row ids (`anchors`); when they were chosen by token string (`anchor_basis`
"tokens") the file also records the strings (`anchor_tokens`, one per leading position), so two models
compare on the tokens they share whatever ids their tokenizers give them (see `lineage.probe.anchors`).

Published TensorGuard feature JSONs (`*_features.json`) load as feature-only fingerprints
(`source == "tensorguard-json"`): they carry the 15 features and nothing else.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lineage import __version__
from lineage.errors import FingerprintFormatError
from lineage.features.tensorguard import TENSORGUARD_FEATURES
from lineage.io.constants import FINGERPRINT_SUFFIX, LENGTH_PREFIX_BYTES, METADATA_KEY
from lineage.io.jsonfile import read_json_object

#: 2: anchors may be chosen by token string (`anchor_basis`, `anchor_tokens`); 3: `identity` responses.
SCHEMA_VERSION = 3
ANCHOR_BASES: tuple[str, ...] = ("tokens", "ids")
TENSORGUARD_JSON_SUFFIX = "_features.json"
_META_KEY = "lineage"


@dataclass(frozen=True)
class ModelSummary:
    """What the headers and config say about a checkpoint."""

    architecture: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    num_parameters: int
    dtypes: tuple[str, ...]
    header_sha256: str
    num_files: int

    def __post_init__(self) -> None:
        if self.num_layers < 0 or self.hidden_size < 0 or self.vocab_size < 0 or self.num_parameters < 0:
            raise ValueError("model summary sizes must be non-negative")


@dataclass(frozen=True)
class Fingerprint:
    """One model's fingerprint.

    Attributes:
        name: the model's name (its folder name, or the file stem).
        tensorguard: the paper's 15 features (`TENSORGUARD_FEATURES`), plus `total_params` when known.
        summary: header facts of the checkpoint; None for published feature-only fingerprints.
        anchors: int64 row ids `[P]` of the embedding-anchored probes in this model; None when there are no
            sketches. For the `tokens` basis the first `len(anchor_tokens)` are the token anchors and the
            rest the id anchors (`lineage.probe.anchors.Anchors`).
        anchor_tokens: canonical token strings of the leading anchors (sorted); empty for the `ids` basis.
        anchor_basis: "tokens" (anchors chosen by token string) or "ids" (no tokenizer: chosen by id).
        sketches: circuit name -> float32 `[L, P, P]` probe-response sketches (L = 1 for embed and head),
            indexed by `anchors` on both axes.
        responses: tensor role key (e.g. `layers.3.q`) -> float32 `[12, 8]` raw responses of the 12 fixed
            probes projected on a seeded random basis, `X W^T Psi`: linear in the weights, the basis of
            merge attribution.
        identity: the sign-carrying responses of the weight test (`lineage.probe.identity`), float16:
            `embed`, `head` `[P, C]` (anchor rows at the kept residual coordinates), and per layer
            `layers.N.resid_vo`, `layers.N.resid_ffn` `[P, C]`, `layers.N.seeded_vo`, `layers.N.seeded_ffn`
            `[K, R]` (the blocks' writes on seeded residual inputs at the read coordinates), `layers.N.v`,
            `layers.N.o` `[kv_dim, M]`, `layers.N.gate`, `layers.N.up`, `layers.N.down` `[U, M]` (gated FFNs).
        quant_noise: for a quantised checkpoint, role key -> the expected energy (sum of squares) that its
            quantisation's rounding puts into that tensor's raw `responses` (`ProbeEngine.response_noise`);
            empty for unquantised weights. What `lineage.compare.quantised` weighs a residual against.
        quant_grid: role key -> the bits of the quantisation grid its values lie on (`lineage.fingerprint.grid`),
            0 for a tensor looked at and on no grid; kept only when some tensor lies on one (a quantised copy,
            stored dequantised or not), empty otherwise. What tells a rounded copy from its original.
        settings: probe settings and seeds used.
        device: where the probes ran.
        source: "checkpoint" or "tensorguard-json".
        lineage_version: the version that wrote it.
    """

    name: str
    tensorguard: dict[str, float]
    summary: ModelSummary | None = None
    anchors: np.ndarray | None = None
    sketches: dict[str, np.ndarray] = field(default_factory=dict)
    responses: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    device: str = "cpu"
    source: str = "checkpoint"
    lineage_version: str = __version__
    anchor_tokens: tuple[str, ...] = ()
    anchor_basis: str = "ids"
    identity: dict[str, np.ndarray] = field(default_factory=dict)
    quant_noise: dict[str, float] = field(default_factory=dict)
    quant_grid: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a fingerprint needs a name")
        missing = [k for k in TENSORGUARD_FEATURES if k not in self.tensorguard]
        if missing:
            raise ValueError(f"tensorguard features missing: {', '.join(missing)}")
        if self.sketches and self.anchors is None:
            raise ValueError("sketches need anchors")
        if self.anchor_basis not in ANCHOR_BASES:
            raise ValueError(f"anchor basis {self.anchor_basis!r}: use one of {ANCHOR_BASES}")
        if (self.anchor_basis == "tokens") != bool(self.anchor_tokens):
            raise ValueError("anchor tokens are given exactly when the anchor basis is 'tokens'")
        if any(not (math.isfinite(v) and v >= 0) for v in self.quant_noise.values()):
            raise ValueError("quantisation noise energies must be finite and >= 0")
        if any(not isinstance(v, int) or not 0 <= v <= 64 for v in self.quant_grid.values()):
            raise ValueError("quantisation grid bits must be integers in [0, 64]")
        if self.anchor_tokens and (self.anchors is None or len(self.anchor_tokens) > len(self.anchors)):
            raise ValueError("more anchor tokens than anchors")

    @property
    def id_anchor_start(self) -> int:
        """Position of the first id anchor (the token anchors come before it)."""
        return len(self.anchor_tokens)

    @property
    def has_sketches(self) -> bool:
        """Whether lineage's own sketches are present (False for published feature-only files)."""
        return bool(self.sketches)

    def tensorguard_vector(self) -> np.ndarray:
        """The 15 features as a float64 vector in the paper's order."""
        return np.array([float(self.tensorguard[k]) for k in TENSORGUARD_FEATURES], dtype=np.float64)


def fingerprint_path(out_dir: str | Path, name: str) -> Path:
    """Where `save_fingerprint` puts the fingerprint of model `name` inside `out_dir`."""
    return Path(out_dir) / f"{name}{FINGERPRINT_SUFFIX}"


def is_fingerprint_file(path: str | Path) -> bool:
    """Whether `path` names a fingerprint file lineage can load (ours or a published TensorGuard JSON)."""
    p = Path(path)
    return p.is_file() and (p.name.endswith(FINGERPRINT_SUFFIX) or p.name.endswith(TENSORGUARD_JSON_SUFFIX))


def fingerprint_stem(path: str | Path) -> str:
    """The model name a fingerprint file stands for (`x.fingerprint.safetensors` -> `x`)."""
    name = Path(path).name
    for suffix in (FINGERPRINT_SUFFIX, TENSORGUARD_JSON_SUFFIX, ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def fingerprint_bytes(fp: Fingerprint, extra: dict[str, str] | None = None) -> bytes:
    """`fp` as the bytes of its fingerprint file (a safetensors file); byte-identical for identical fingerprints.

    What a worker sends its driver, and what `save_fingerprint` writes: no temporary file either way.

    Args:
        fp: the fingerprint.
        extra: more header metadata (string to string) beside the fingerprint's own, which loading ignores
            (a cache entry's seal: `lineage.fingerprint.cache`).
    """
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    if fp.anchors is not None:
        tensors["anchors"] = np.ascontiguousarray(fp.anchors, dtype=np.int64)
    for circuit, arr in fp.sketches.items():
        tensors[f"sketch.{circuit}"] = np.ascontiguousarray(arr, dtype=np.float32)
    for key, arr in fp.responses.items():
        tensors[f"response.{key}"] = np.ascontiguousarray(arr, dtype=np.float32)
    for key, arr in fp.identity.items():
        tensors[f"identity.{key}"] = np.ascontiguousarray(arr, dtype=np.float16)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "lineage_version": fp.lineage_version,
        "name": fp.name,
        "source": fp.source,
        "device": fp.device,
        "settings": fp.settings,
        "summary": asdict(fp.summary) if fp.summary is not None else None,
        "tensorguard": {k: float(v) for k, v in fp.tensorguard.items()},
        "anchor_basis": fp.anchor_basis,
        "anchor_tokens": list(fp.anchor_tokens),
    }
    if fp.quant_noise:  # only quantised checkpoints have it: every other file stays as it was, byte for byte
        doc["quant_noise"] = {k: float(v) for k, v in fp.quant_noise.items()}
    if any(fp.quant_grid.values()):  # likewise: only a model on a quantisation grid has it
        doc["quant_grid"] = {k: int(v) for k, v in fp.quant_grid.items()}
    # sort_keys: the JSON, and so the file, must not depend on dict insertion order. ASCII escapes (the
    # default) keep any token string, even a lone surrogate, valid in the header.
    meta = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if extra and _META_KEY in extra:
        raise ValueError(f"the metadata key {_META_KEY!r} is the fingerprint's own")
    return save(tensors, metadata={**(extra or {}), _META_KEY: meta})


def save_fingerprint(fp: Fingerprint, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write `fp` to `path` (a safetensors file); byte-identical for identical fingerprints.

    Args:
        fp: the fingerprint.
        path: the file to write (parent folders are created).
        extra: more header metadata (see `fingerprint_bytes`).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(fingerprint_bytes(fp, extra), path)
    return path


def write_atomically(data: bytes, path: Path) -> None:
    """Write `data` to `path` through a temporary file in its folder and a rename."""
    # A unique temporary name in the target folder, then os.replace (atomic on one file system): readers see
    # the old file or the new one, never a partial one, and two writers of one key (two scans sharing a
    # cache) never write into each other's temporary file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is shared like any folder of files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_fingerprint(path: str | Path) -> Fingerprint:
    """Read a fingerprint file, or a published TensorGuard `*_features.json`.

    Args:
        path: the file.

    Returns:
        The fingerprint.

    Raises:
        FingerprintFormatError: unreadable, not a fingerprint, or of another schema version.
    """
    path = Path(path)
    if not path.is_file():
        raise FingerprintFormatError(path, "no such fingerprint file")
    if path.suffix == ".json":
        return _load_tensorguard_json(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FingerprintFormatError(path, f"cannot read the file ({exc.strerror or exc})") from None
    return fingerprint_from_bytes(data, path)


def header_metadata(data: bytes) -> dict[str, str]:
    """The metadata of a fingerprint file's header (`{}` when there is none or it cannot be read)."""
    try:
        (length,) = struct.unpack("<Q", data[:LENGTH_PREFIX_BYTES])
        meta = json.loads(data[LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + length]).get(METADATA_KEY) or {}
    except Exception:  # noqa: BLE001 - struct, JSON and attribute errors for corrupt bytes alike
        return {}
    return meta if isinstance(meta, dict) else {}


def fingerprint_from_bytes(data: bytes, origin: str | Path = "<fingerprint bytes>") -> Fingerprint:
    """The fingerprint whose file bytes are `data` (checked like any fingerprint file).

    Args:
        data: the bytes of a fingerprint file (`fingerprint_bytes`).
        origin: what they are, for errors (the file they were read from).

    Raises:
        FingerprintFormatError: not a fingerprint, or of another schema version.
    """
    from safetensors.numpy import load

    try:
        (length,) = struct.unpack("<Q", data[:LENGTH_PREFIX_BYTES])
        header = json.loads(data[LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + length])
        meta = (header.get(METADATA_KEY) or {}).get(_META_KEY)
        arrays = load(data)
    except Exception as exc:  # struct, JSON and safetensors raise several types for corrupt bytes
        raise FingerprintFormatError(origin, f"not a readable fingerprint file ({exc})") from None
    if meta is None:
        raise FingerprintFormatError(origin, "safetensors file without lineage metadata: not a fingerprint")
    try:
        doc = json.loads(meta)
    except json.JSONDecodeError as exc:
        raise FingerprintFormatError(origin, f"fingerprint metadata is not JSON ({exc})") from None
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FingerprintFormatError(
            origin, f"schema version {version} is not {SCHEMA_VERSION}: fingerprint the model again"
        )
    try:
        summary = ModelSummary(**{**doc["summary"], "dtypes": tuple(doc["summary"]["dtypes"])}) if doc[
            "summary"
        ] else None
        return Fingerprint(
            name=doc["name"],
            tensorguard=doc["tensorguard"],
            summary=summary,
            anchors=arrays.get("anchors"),
            sketches={k[len("sketch.") :]: v for k, v in sorted(arrays.items()) if k.startswith("sketch.")},
            responses={k[len("response.") :]: v for k, v in sorted(arrays.items()) if k.startswith("response.")},
            identity={k[len("identity.") :]: v for k, v in sorted(arrays.items()) if k.startswith("identity.")},
            settings=doc.get("settings", {}),
            device=doc.get("device", "cpu"),
            source=doc.get("source", "checkpoint"),
            lineage_version=doc.get("lineage_version", "?"),
            anchor_tokens=tuple(str(t) for t in doc.get("anchor_tokens", [])),
            anchor_basis=doc.get("anchor_basis", "ids"),
            quant_noise={str(k): float(v) for k, v in (doc.get("quant_noise") or {}).items()},
            quant_grid={str(k): int(v) for k, v in (doc.get("quant_grid") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FingerprintFormatError(origin, f"malformed fingerprint metadata ({exc})") from None


def _load_tensorguard_json(path: Path) -> Fingerprint:
    doc = read_json_object(path, FingerprintFormatError, "not a readable JSON file")
    missing = [k for k in TENSORGUARD_FEATURES if k not in doc]
    if missing:
        raise FingerprintFormatError(path, f"not a TensorGuard feature file: missing {', '.join(missing)}")
    features: dict[str, float] = {}
    for key in (*TENSORGUARD_FEATURES, "total_params"):
        if key not in doc:
            continue
        value = doc[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise FingerprintFormatError(path, f"feature '{key}' is not a finite number")
        features[key] = float(value)
    name = doc.get("model_name") if isinstance(doc.get("model_name"), str) else None
    return Fingerprint(name=name or fingerprint_stem(path), tensorguard=features, source="tensorguard-json")
