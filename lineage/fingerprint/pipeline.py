"""Fingerprinting one model: stream its tensors once through the probes, then the statistics stage.

Every weight matrix is read once, in row blocks of its stored dtype (`lineage.probe.engine.block_bytes`), and
each block serves everything that needs it in one product: its circuit's sketch, its raw random responses
(merge attribution), the weight test's unit profiles and, for the ten tensors the TensorGuard recipe picks,
its gradient statistics (those ten are read a second time for the recipe's adversarial probes, which depend
on the whole matrix). The recipe always picks the embedding (and an untied head), so those are streamed
whole, twice; the circuits themselves need only their anchor rows. NaN/Inf weights are caught on the probe
responses, which every entry reaches, so no separate pass over the weights is needed; a matrix of one value
everywhere (a blank export) is refused on its first pass, for the price of one row, and a fingerprint with a
NaN/Inf left in it is refused before it is returned. Memory is one block plus small arrays, whatever the model
size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lineage import __version__
from lineage.arch import ResolvedModel, resolve_model
from lineage.errors import CheckpointError
from lineage.features import tensorguard
from lineage.features.sketch import stack_layers
from lineage.fingerprint.format import Fingerprint, ModelSummary
from lineage.fingerprint.grid import GRID_VERSION, grid_bits
from lineage.fingerprint.grid import ROWS as GRID_ROWS
from lineage.fingerprint.grid import TENSORS as GRID_TENSORS
from lineage.fingerprint.heap import TRIM_EVERY, release_free_memory
from lineage.io.checkpoint import Checkpoint
from lineage.io.digest import files_sha256
from lineage.io.hub import HubModel
from lineage.io.open import open_checkpoint
from lineage.io.views import ViewedCheckpoint
from lineage.io.vocab import TOKENIZER_FILE
from lineage.probe.anchors import Anchors, choose_anchors
from lineage.probe.circuits import CircuitProbe
from lineage.probe.device import select_device
from lineage.probe.engine import RESPONSE_RANK, NonFiniteResponse, ProbeEngine, block_bytes
from lineage.probe.frame import frame_directions, frame_source
from lineage.probe.identity import (
    STORE_DTYPE,
    mixing_weights,
    residual_coordinates,
    seeded_inputs,
    seeded_split,
)
from lineage.probe.perturbations import PERTURBATIONS
from lineage.probe.profiles import Profiles

#: `progress(done_bytes, total_bytes)`: weight bytes streamed so far, of the model's own weight bytes.
Progress = Callable[[int, int], None]
#: Bumped whenever the numbers a fingerprint holds change for the same settings: it is part of the settings,
#: so fingerprints of different pipelines never compare and cache entries of an older one are not reused.
#: 3-5: anchors chosen by token string when the model has a tokenizer; 6: sign-carrying identity responses;
#: 7: the blocks' writes on seeded residual inputs (`seeded_vo`, `seeded_ffn`); 8: each profiled FFN unit's expert
#: in a mixture's layers (`unit_expert`); 9: an FFN wider than the unit sample profiles the units whose gates
#: respond most to the anchors, not a seeded sample (`lineage.probe.identity.profiled_units`); 10: FFN units profiled
#: on the weight frame too (`frame_gate`, `frame_up`, `frame_down`, `frame`: `lineage.probe.frame`).
PIPELINE_VERSION = 10
#: A weight entry this large overflows float32 products on its own (float32 tops out at 3.4e38): real weights
#: stay below 1e4, so the threshold only separates corrupt values from inputs that overflowed upstream.
_OVERFLOWING = 1e30
PUBLIC_KEY_ID = "public"


@dataclass(frozen=True)
class FingerprintOptions:
    """How to fingerprint.

    Attributes:
        device: "auto", "cpu", "cuda" or "cuda:N".
        seed: the probe seed (anchors, probes, random bases); fingerprints compare only at equal seeds.
        anchors: number of embedding-anchored probes P (sketches are P x P).
        tensorguard_tensors: tensors the TensorGuard recipe samples (10 in the paper).
        tensorguard_max_layer: highest layer the recipe samples from (15 in the paper).
        key: a secret that seeds, with `seed`, the anchors, probes, kept coordinates, units and mixtures; None
            is the public key. Only its id (`key_id`) is written anywhere: a model edited against the public
            probes cannot be edited against the probes of a key it does not know.
    """

    device: str = "auto"
    seed: int = 0
    anchors: int = 64
    tensorguard_tensors: int = 10
    tensorguard_max_layer: int = 15
    key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 8 <= self.anchors <= 1024:
            raise ValueError("anchors must be between 8 and 1024")
        if self.tensorguard_tensors < 1 or self.tensorguard_max_layer < 0:
            raise ValueError("tensorguard_tensors must be >= 1 and tensorguard_max_layer >= 0")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.key is not None and not self.key:
            raise ValueError("a key must not be empty (leave it unset for the public key)")

    @property
    def key_id(self) -> str:
        """`public`, or the first 16 hex digits of the key's SHA-256 (never the key)."""
        return key_id(self.key)

    @property
    def probe_seed(self) -> int:
        """The seed of every probe: `seed` itself under the public key, else `seed` hashed with the key."""
        if self.key is None:
            return self.seed
        digest = hashlib.blake2b(f"{self.seed}|{self.key}".encode(), digest_size=8, person=b"lineage-key").digest()
        return int.from_bytes(digest, "little") & ((1 << 63) - 1)

    def settings(self) -> dict:
        """What goes into the fingerprint file (everything but the device, which does not change results)."""
        return {
            "pipeline": PIPELINE_VERSION,
            "seed": self.seed,
            "key_id": self.key_id,
            "anchors": self.anchors,
            "tensorguard_tensors": self.tensorguard_tensors,
            "tensorguard_max_layer": self.tensorguard_max_layer,
            "response_rank": RESPONSE_RANK,
            "perturbations": {p.name: p.count for p in PERTURBATIONS},
        }


def key_id(key: str | None) -> str:
    """The id a fingerprint records for `key`: `public` for None, else 16 hex digits of its SHA-256."""
    return PUBLIC_KEY_ID if key is None else hashlib.sha256(f"lineage-key|{key}".encode()).hexdigest()[:16]


def cache_key(path: str | Path, options: FingerprintOptions, *, verify_weights: bool = False) -> str:
    """A content address of a model for the fingerprint cache (`model_identity`'s key)."""
    return model_identity(path, options, verify_weights=verify_weights)[0]


def model_identity(path: str | Path, options: FingerprintOptions, *, verify_weights: bool = False) -> tuple[str, str]:
    """`(cache key, digest of the headers)` of a model: what the cache files its entry under, and what the
    entry must have been made from (`lineage.fingerprint.cache`).

    The key hashes every header (names, dtypes, shapes, offsets), the probe settings, the lineage version and,
    by default, each file's size and modification time: reading no tensor data, it costs a few reads, but an
    in-place edit that keeps size and time (a file replaced by `cp -p`, `rsync -a` or tar) goes unseen. With
    `verify_weights` it hashes the sha256 of every file's bytes instead (read in full, at disk speed:
    `lineage.io.digest`), so no replaced byte is ever answered from the cache.
    """
    with open_checkpoint(path) as reader:
        # The tokenizer chooses the anchors, so a changed (or removed) tokenizer.json is another model.
        tokenizer = reader.folder / TOKENIZER_FILE
        files = [*reader.files, *([tokenizer] if tokenizer.is_file() else [])]
        headers = reader.header_sha256()
        if verify_weights:
            stamp = [[p.name, digest] for p, digest in zip(files, files_sha256(files))]
        else:
            stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        doc = {"headers": headers, "files": stamp, "settings": options.settings(), "v": __version__}
        doc["grid"] = GRID_VERSION  # entries made before the grid was looked at lack it: they must miss
        if verify_weights:
            doc["content"] = "sha256"
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(), headers


def _role_keys(model: ResolvedModel) -> dict[str, str]:
    """Each tensor's role key (`embed`, `head`, `layers.{i}.{role}`: the first layer and role naming it), by
    name, made once per model: a mixture of experts streams thousands of tensors."""
    keys: dict[str, str] = {}
    for layer in model.layers:
        for role, tensor in layer.names.items():
            keys.setdefault(tensor, f"layers.{layer.index}.{role}")
    if model.head:
        keys[model.head] = "head"
    keys[model.embed] = "embed"
    return keys


class _Run:
    """One fingerprinting pass: the `Weights` the circuits read, recording per-tensor responses on the way."""

    def __init__(
        self,
        reader: Checkpoint,
        model: ResolvedModel,
        options: FingerprintOptions,
        progress: Progress | None = None,
    ) -> None:
        self.reader, self.model, self.options = reader, model, options
        self.device = select_device(options.device)
        self.engine = ProbeEngine(self.device, options.probe_seed)
        self.block_bytes = block_bytes(self.device)
        # Only the text model's own tensors: a multimodal checkpoint's vision tower must not be sampled.
        own = {model.embed, model.head, model.final_norm} | {n for lt in model.layers for n in lt.names.values()}
        shapes = {info.name: tuple(info.shape) for info in reader if info.name in own}
        self.selected = set(
            tensorguard.select_tensors(
                shapes,
                max_layer=options.tensorguard_max_layer,
                count=options.tensorguard_tensors,
                seed=options.seed,
            )
        )
        self.role_keys = _role_keys(model)
        self.stats: list[tuple[str, np.ndarray]] = []
        self.responses: dict[str, np.ndarray] = {}
        self.quant_noise: dict[str, float] = {}  # role -> what its quantisation's rounding puts into its responses
        self.grid_names = _grid_sample(self.role_keys, model, shapes)
        self.quant_grid: dict[str, int] = {}  # role -> bits of the grid its values lie on (0: none)
        self.done: set[str] = set()
        # Progress in bytes as stored (what a reader pays for): each tensor counts once, on its first pass.
        self.progress = progress
        self.bytes_total = sum(info.end - info.start for info in reader if info.name in own)
        self.bytes_done = 0
        self.streamed: set[str] = set()

    def _counted(self, name: str, blocks: Iterator[tuple[int, torch.Tensor]]) -> Iterator[tuple[int, torch.Tensor]]:
        """`blocks`, reporting the stored bytes of each block of `name`'s first pass to the progress callback."""
        info = self.reader.info(name)
        per_row = (info.end - info.start) // max(1, info.shape[0] if info.shape else 1)
        first_pass = name not in self.streamed
        for first_row, block in blocks:
            if self.progress is not None and first_pass:
                rows = block.shape[0] if block.dim() else 1
                self.bytes_done = min(self.bytes_total, self.bytes_done + per_row * rows)
                self.progress(self.bytes_done, self.bytes_total)
            yield first_row, block
        self.streamed.add(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of the tensor `name`."""
        return tuple(self.reader.info(name).shape)

    def matmul(self, name: str, inputs: torch.Tensor | None) -> torch.Tensor | None:
        """`inputs @ W.T`, streaming W in row blocks; records W's responses (and statistics if selected)."""
        return self.matmul_profiled(name, inputs, None)[0]

    def matmul_profiled(
        self, name: str, inputs: torch.Tensor | None, profiles: Profiles | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`(inputs @ W.T, the unit profiles)` in one streamed pass; records W's responses like `matmul`."""
        info = self.reader.info(name)
        role = self.role_keys.get(name, name)

        def blocks() -> Iterator[tuple[int, torch.Tensor]]:
            stored = self.reader.row_blocks(name, self.block_bytes, dtype=None, check_finite=False)
            if name in self.streamed:
                return self._counted(name, stored)
            if name in self.grid_names:
                stored = self._on_grid(role, stored)
            return self._counted(name, self._not_constant(name, stored))

        try:
            product = self.engine.respond(
                blocks, tuple(info.shape), role, inputs, with_stats=name in self.selected, profiles=profiles
            )
        except NonFiniteResponse:
            raise self._non_finite(name) from None
        self.done.add(name)
        if len(self.done) % TRIM_EVERY == 0:  # thousands of freed buffers must not pile up in the C heap
            release_free_memory()
        if name in self.selected:
            self.stats.append((name, product.response.gradient_stats))
        if name not in (self.model.embed, self.model.head):
            self.responses[role] = product.response.responses
            noise = self.reader.quantisation_noise(name)
            if noise is not None and role not in self.quant_noise:
                self.quant_noise[role] = self.engine.response_noise(role, tuple(info.shape), noise)
        return product.out, product.profile

    def _on_grid(self, role: str, blocks: Iterator[tuple[int, torch.Tensor]]) -> Iterator[tuple[int, torch.Tensor]]:
        """`blocks`, recording the bits of the quantisation grid the first block's first rows lie on."""
        first = True
        for first_row, block in blocks:
            if first and block.dim() == 2:
                self.quant_grid[role] = grid_bits(block[:GRID_ROWS].float().cpu().numpy()) or 0
            first = False
            yield first_row, block

    def _not_constant(
        self, name: str, blocks: Iterator[tuple[int, torch.Tensor]]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """`blocks`, refusing (once they are all seen) a matrix whose entries are all one value: a blank or
        zeroed matrix gives no response to fingerprint, and its statistics would come out NaN. Only a first row
        of one value makes the whole block be compared, so a real matrix costs one row (a padding token's zero
        row in an embedding costs one block)."""
        value: float | None = None  # the one value every entry seen so far holds; None before the first block
        for first_row, block in blocks:
            if value is not False:
                value = _one_value(block, value)
            yield first_row, block
        if value is not False and value is not None:
            what = "all zeros" if value == 0 else f"every entry {value:g}"
            raise CheckpointError(
                self.reader.file_of(name),
                f"tensor '{name}' is constant ({what}): nothing to fingerprint; the checkpoint is blank or "
                "corrupt (an untrained export or a failed conversion): re-download or re-export it",
            )

    def _non_finite(self, name: str) -> CheckpointError:
        """The error for a weight whose responses came out NaN/Inf: its own NaN/Inf values, counted by a checked
        read, or, when it has none, finite values so large that the float32 products overflowed."""
        largest = 0.0
        # Raises NonFiniteWeightsError, with the count, when the stored values themselves hold NaN/Inf.
        for _, block in self.reader.row_blocks(name, self.block_bytes, dtype=torch.float32, check_finite=True):
            largest = max(largest, float(block.abs().max())) if block.numel() else largest
        if largest >= _OVERFLOWING:
            problem = f"holds values too large for float32 products (up to {largest:.3g}): the products overflowed"
        else:
            problem = (
                f"gave NaN/Inf products from finite values (up to {largest:.3g}): its inputs overflowed in the "
                "layers before (a huge norm gain or weight there)"
            )
        return CheckpointError(
            self.reader.file_of(name),
            f"tensor '{name}' {problem}; the weights are corrupt or badly scaled: re-download or re-export them",
        )

    def vector(self, name: str | None) -> torch.Tensor | None:
        """A gain or bias on the device (checked for NaN/Inf by the reader)."""
        return None if name is None else self.engine.put(self.reader.tensor(name))

    def rows(self, name: str, ids: np.ndarray) -> torch.Tensor:
        """Anchor rows of the embedding or head; the whole matrix is streamed only if the recipe samples it."""
        if name in self.selected and name not in self.done:
            self.matmul(name, None)
        return self.engine.put(self.reader.rows(name, ids))


def _grid_sample(role_keys: dict[str, str], model: ResolvedModel, shapes: dict[str, tuple]) -> frozenset[str]:
    """The decoder matrices whose quantisation grid is looked at: at most `GRID_TENSORS`, spread evenly over the
    layers (a mixture's thousands of experts must not each pay for it)."""
    names = [n for n, role in role_keys.items() if n not in (model.embed, model.head) and role.startswith("layers.")
             and len(shapes.get(n, ())) == 2]  # fmt: skip
    if len(names) <= GRID_TENSORS:
        return frozenset(names)
    return frozenset(names[round(i * (len(names) - 1) / (GRID_TENSORS - 1))] for i in range(GRID_TENSORS))


def _one_value(block: torch.Tensor, value: float | None) -> float | bool:
    """The one value all of `block` holds (and `value`, the one of the blocks before), or False."""
    first = block.reshape(block.shape[0], -1)[0] if block.dim() else block.reshape(1)
    lo, hi = (float(x) for x in torch.aminmax(first.float()))
    if lo != hi or (value is not None and lo != value) or not bool((block == lo).all()):
        return False
    return lo


def _anchors(reader: Checkpoint, model: ResolvedModel, options: FingerprintOptions) -> Anchors:
    """The model's anchors: by token string when it has a vocabulary, by id otherwise."""
    # A head padded or trimmed to another vocabulary size than the embedding: anchor only rows both have.
    head_vocab = int(reader.info(model.head).shape[0]) if model.head else model.vocab_size
    limit = min(model.vocab_size, head_vocab)

    def row_norms(ids) -> np.ndarray:  # noqa: ANN001
        return reader.rows(model.embed, list(ids)).norm(dim=1).numpy()

    return choose_anchors(reader.vocabulary, limit, options.anchors, options.probe_seed, row_norms)


def fingerprint_model(
    path: str | Path | HubModel, options: FingerprintOptions | None = None, progress: Progress | None = None
) -> Fingerprint:
    """Fingerprint the model at `path`.

    Args:
        path: what `lineage.io.open.open_checkpoint` opens (safetensors folder, GGUF, adapter, hub model).
        options: probe settings; defaults when None.
        progress: called as `progress(done_bytes, total_bytes)` as weight blocks stream (bytes as stored, of
            the model's own tensors; the last call has done == total).

    Returns:
        The fingerprint (not yet written; see `lineage.fingerprint.save_fingerprint`).

    Raises:
        CheckpointError: bad input (corrupt file, NaN weights, unsafe paths...).
        UnsupportedArchitectureError: tensor names of no known layout.

    Example:
        >>> fp = fingerprint_model("models/llama-mini")  # doctest: +SKIP
        >>> fp.sketches["qk"].shape  # doctest: +SKIP
        (4, 64, 64)
    """
    options = options or FingerprintOptions()
    with open_checkpoint(path) as stored, torch.no_grad():
        model = resolve_model(stored)
        reader = ViewedCheckpoint(stored, model.views) if model.views else stored
        run = _Run(reader, model, options, progress)
        anchors = _anchors(reader, model, options)
        sketches, identity = _probe(run, anchors, options.probe_seed)
        # Matrices the recipe sampled that no circuit reads (rare: extra projections) are read here.
        for name in sorted(run.selected - run.done):
            run.matmul(name, None)
        if progress:
            progress(run.bytes_total, run.bytes_total)  # tensors read only in part (embedding rows) end here
        summary = ModelSummary(
            architecture=str(reader.config.get("model_type") or model.spec.name),
            num_layers=model.num_layers,
            hidden_size=model.hidden_size,
            vocab_size=model.vocab_size,
            num_parameters=reader.num_parameters,
            dtypes=tuple(reader.dtypes),
            header_sha256=reader.header_sha256(),
            num_files=len(reader.files),
        )
        features = tensorguard.aggregate(run.stats, model.num_layers, reader.num_parameters)
        _check_finite_numbers(reader, run, features, sketches, identity)
    layers = [lt.index for lt in model.layers]
    layout = {"layout": model.spec.name, "layers": layers, "symmetry": list(model.spec.symmetries)}
    return Fingerprint(
        name=reader.name,
        tensorguard=features,
        summary=summary,
        anchors=anchors.ids,
        anchor_tokens=anchors.tokens,
        anchor_basis=anchors.basis,
        sketches=sketches,
        responses=dict(sorted(run.responses.items())),
        quant_noise=dict(sorted(run.quant_noise.items())),
        quant_grid=dict(sorted(run.quant_grid.items())) if any(run.quant_grid.values()) else {},
        identity=identity,
        settings={**options.settings(), **layout},
        device=run.device.type,
        lineage_version=__version__,
    )


def _check_finite_numbers(
    reader: Checkpoint, run: _Run, features: dict[str, float], sketches: dict[str, np.ndarray],
    identity: dict[str, np.ndarray],
) -> None:  # fmt: skip
    """Refuse a fingerprint holding NaN/Inf: it could be neither saved (JSON has no NaN) nor compared (a NaN
    distance reads as a match). Weights that are finite and not constant rarely get here; what does (a layer
    whose norm gains are all zero, say) is named by the first statistic or response that came out non-finite."""
    bad = next((f"the gradient statistics of tensor '{n}'" for n, v in run.stats if not np.isfinite(v).all()), None)
    bad = bad or next((f"the feature '{k}'" for k, v in features.items() if not np.isfinite(v)), None)
    for kind, values in (("sketch", sketches), ("identity response", identity), ("response", run.responses)):
        bad = bad or next((f"the {kind} '{k}'" for k, v in sorted(values.items()) if not np.isfinite(v).all()), None)
    if bad:
        where = reader.files[0] if len(reader.files) == 1 else reader.folder
        raise CheckpointError(
            where,
            f"{bad} came out NaN/Inf: the weights are degenerate (zeroed or constant gains, or values too large "
            "for float32), so there is nothing to fingerprint; re-download or re-export the checkpoint",
        )


def _probe(run: _Run, anchors: Anchors, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every layer's sketches and identity responses, plus the model-level ones (embedding, head)."""
    model, ids = run.model, anchors.ids
    embed_rows = run.rows(model.embed, ids)
    put = run.engine.put
    coords = residual_coordinates(model.hidden_size, seed)
    mixing = put(torch.from_numpy(mixing_weights(anchors, seed)))
    read, _ = seeded_split(model.hidden_size, seed)
    layers = list(model.layers)
    if layers:
        run.reader.prefetch(n for n in layers[0].names.values() if n)
    frame, gram = _frame(run)
    circuits = CircuitProbe(
        model, embed_rows, mixing, put(torch.from_numpy(coords)),
        put(torch.from_numpy(seeded_inputs(model.hidden_size, seed))), put(torch.from_numpy(read)), frame,
    )
    per_layer, identity = [], {} if gram is None else {"frame": _stored(gram)}
    for i, layer in enumerate(layers):
        if i + 1 < len(layers):  # the disk reads the next layer while this one is probed
            run.reader.prefetch(n for n in layers[i + 1].names.values() if n)
        probed = circuits.layer(layer, run)
        per_layer.append({k: v.cpu().numpy() for k, v in probed.sketches.items()})
        # Stored now: a response may be a view of a whole product, which must not stay alive for the run.
        identity.update({f"layers.{layer.index}.{k}": _stored(v) for k, v in probed.identity.items()})
    head_rows = run.rows(model.head, ids) if model.head else embed_rows
    sketches = stack_layers(per_layer)
    sketches["embed"] = circuits.embed_sketch().cpu().numpy()[None].astype(np.float32)
    final = run.vector(model.final_norm)
    sketches["head"] = circuits.head_sketch(final, head_rows).cpu().numpy()[None].astype(np.float32)
    sketches["unembed"] = circuits.unembed_sketch(final, head_rows).cpu().numpy()[None].astype(np.float32)
    identity["embed"] = _stored(embed_rows[:, circuits.coordinates])
    if model.head:
        identity["head"] = _stored(head_rows[:, circuits.coordinates])
    return sketches, dict(sorted(identity.items()))


def _frame(run: _Run) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """`(directions, gram)` of the weight frame (`lineage.probe.frame`), or `(None, None)` for a model without a
    dense gated FFN. Its gate is read once more for it (one matrix of the model, before the layers stream)."""
    source = frame_source(list(run.model.layers))
    if source is None:
        return None, None
    layer, name, fused = source
    gain = run.vector(layer["ffn_norm"])
    if gain is not None:
        gain = gain + run.model.spec.gain_offset
    rows = run.shape(name)[0] // (2 if fused else 1)
    run.reader.prefetch([name])  # the first layer's is on its way already; a later first dense layer's is not
    # Checked for NaN/Inf here: a bad gate must be named as itself, not as the product it would spoil later.
    blocks = run.reader.row_blocks(name, run.block_bytes, dtype=torch.float32, check_finite=True)
    directions, gram = frame_directions(((i, run.engine.put(b)) for i, b in blocks), rows, gain)
    return directions, gram


def _stored(response: torch.Tensor) -> np.ndarray:
    """An identity response as the fingerprint stores it (`STORE_DTYPE`, on the host)."""
    with np.errstate(over="ignore"):  # an overflow to Inf is `_check_finite_numbers`'s to report, in one line
        return response.float().cpu().numpy().astype(STORE_DTYPE)
