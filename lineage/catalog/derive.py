"""From a recipe entry to a model: one function per derivation kind, behind an explicit registry.

Every derivation starts from its parents *as saved on disk* (loaded back in fp32), never from objects
still in memory, so a model comes out the same whether its parents were built in this run or in an
earlier, interrupted one -- and a bf16 parent passes its rounding on to its children, as on the hub.

Seeds: every random choice of an entry (initialisation, training windows, LoRA's init, merge masks,
disguises, vocabulary permutations) draws from `effective_seed` (catalog seed, entry name, entry seed),
and every document order (a family's mixture, hence its tokenizer; fine-tuning domains; abliteration's
prompt sets) from `text_seed` (catalog seed, recipe seed). Another catalog seed thus gives a catalog of
the same structure in which every model -- tokenizers included -- is a fresh draw: the held-out catalog
that constants chosen on the first one are measured on.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lineage.catalog import disguise, merge, operations, rotate
from lineage.catalog.architectures import make_model
from lineage.catalog.bpe import encode, train_tokenizer
from lineage.catalog.recipe import Entry, Recipe
from lineage.catalog.save import load_model
from lineage.catalog.text import api_headers, instruction_prompt, iter_documents, mixture_text
from lineage.catalog.train import TrainConfig, eval_loss, train_lm, train_lora

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

Derived = tuple["PreTrainedModel", "PreTrainedTokenizerFast", dict[str, Any]]
_DERIVATIVE_TEXT_SEED = 0  # document order of fine-tuning domains (windows are drawn with the entry's seed)


def effective_seed(catalog_seed: int, entry: Entry) -> int:
    """The seed an entry trains or transforms with: its own seed combined with the catalog's."""
    digest = hashlib.sha256(f"{catalog_seed}|{entry.name}|{entry.seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def text_seed(catalog_seed: int, seed: int) -> int:
    """The document-order seed of a mixture: the recipe's ``seed`` under catalog seed 0, reshuffled otherwise.

    Catalog seed 0 keeps the recipe's own text seeds, so the default catalog is the one the recipe has
    always described (and stays byte-identical across builder versions that add entries).
    """
    if catalog_seed == 0:
        return seed
    digest = hashlib.sha256(f"{catalog_seed}|text|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass
class Workspace:
    """What derivations share during one build: the recipe, the models folder and cached text/tokenizers."""

    recipe: Recipe
    out_dir: Path
    _tokenizers: dict[str, PreTrainedTokenizerFast] = field(default_factory=dict)
    _tokens: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def load(self, name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
        return load_model(self.out_dir / name)

    def text_seed(self, seed: int) -> int:
        """A recipe text seed under this build's catalog seed (see `text_seed`)."""
        return text_seed(self.recipe.settings.seed, seed)

    def family_tokenizer(self, family: str) -> PreTrainedTokenizerFast:
        """The family's tokenizer, trained on its mixture once per build (every model of the family, its
        independents included, gets this very tokenizer)."""
        if family not in self._tokenizers:
            fam = self.recipe.families[family]
            text = mixture_text(fam.sources, seed=self.text_seed(fam.seed), max_chars=self.recipe.settings.max_chars)
            self._tokenizers[family] = train_tokenizer(text, vocab_size=fam.vocab, kind=fam.tokenizer)
        return self._tokenizers[family]

    def tokens(self, tokenizer: PreTrainedTokenizerFast, sources: tuple[str, ...], text_seed: int,
               max_chars: int | None = None) -> torch.Tensor:
        """The token stream of a mixture under a tokenizer (cached per tokenizer and mixture)."""
        max_chars = max_chars or self.recipe.settings.max_chars
        tok_id = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
        key = (tok_id, sources, text_seed, max_chars)
        if key not in self._tokens:
            text = mixture_text(sources, seed=text_seed, max_chars=max_chars)
            self._tokens[key] = torch.tensor(encode(tokenizer, text), dtype=torch.long)
        return self._tokens[key]

    def train_config(self, *, steps: int, lr: float, seed: int) -> TrainConfig:
        s = self.recipe.settings
        return TrainConfig(steps=steps, lr=lr, batch_size=s.batch_size, seq_len=s.seq_len, seed=seed)


def _pretrain(ws: Workspace, e: Entry, seed: int) -> Derived:
    # An independent model takes its family's tokenizer and the mixture of `data_family` (its own family's
    # by default): with the same seed-independent inputs as a base, only its own seed sets it apart.
    data = ws.recipe.families[e.data_family]
    tok = ws.family_tokenizer(e.family)
    model = make_model(e.shape, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id, seed=seed)
    ids = ws.tokens(tok, data.sources, ws.text_seed(data.seed))
    result = train_lm(model, ids, ws.train_config(steps=e.steps, lr=e.lr, seed=seed))
    return model, tok, {"first_loss": result.first_loss, "last_loss": result.last_loss}


_TRAIN_DEFAULTS = {  # (sources, steps, lr) when the recipe leaves them out
    "finetune": ((), 100, 1e-3),
    "instruct": (("instruct",), 100, 1e-3),
    "continued_pretrain": ((), 300, 2e-3),
    "lora": ((), 100, 1e-2),
}


def _train(ws: Workspace, e: Entry, seed: int) -> Derived:
    model, tok = ws.load(e.parents[0])
    sources, steps, lr = _TRAIN_DEFAULTS[e.op]
    sources = tuple(e.param("sources", sources))
    if not sources:
        raise ValueError(f"{e.name}: {e.op} needs params.sources (the text domain)")
    ids = ws.tokens(tok, sources, ws.text_seed(_DERIVATIVE_TEXT_SEED))
    cfg = ws.train_config(steps=int(e.param("steps", steps)), lr=float(e.param("lr", lr)), seed=seed)
    if e.op == "lora":
        model, result = train_lora(model, ids, cfg, rank=int(e.param("rank", 8)), alpha=float(e.param("alpha", 32)))
    else:
        result = train_lm(model, ids, cfg)
    return model, tok, {"first_loss": result.first_loss, "last_loss": result.last_loss}


def _merge(ws: Workspace, e: Entry, seed: int) -> Derived:
    loaded = [ws.load(p) for p in e.parents]
    states = [m.state_dict() for m, _ in loaded]
    weights = list(e.weights)
    info: dict[str, Any] = {}
    if e.op == "merge_metric_weighted":
        sources = tuple(e.param("sources", ws.recipe.families[e.family].sources))
        ids = ws.tokens(loaded[0][1], sources, ws.text_seed(_DERIVATIVE_TEXT_SEED + 1), max_chars=60_000)
        losses = [eval_loss(m, ids, seq_len=ws.recipe.settings.seq_len) for m, _ in loaded]
        weights = merge.metric_weights(losses, temperature=float(e.param("temperature", 0.2)))
        info["val_losses"] = losses
    method = e.op.removeprefix("merge_").replace("metric_weighted", "linear")
    base = ws.load(e.base)[0].state_dict() if method not in ("linear", "slerp") else None
    merged = merge.merge_state_dicts(method, states, weights, base=base, density=float(e.param("density", 1.0)),
                                     seed=seed)
    model, tok = loaded[0]
    model.load_state_dict(merged, strict=True)
    info["weights"] = [float(w) for w in weights]
    return model, tok, info


def _weight_op(ws: Workspace, e: Entry, seed: int) -> Derived:
    model, tok = ws.load(e.parents[0])
    info: dict[str, Any] = {}
    if e.op in ("quant_int8", "quant_int4"):
        operations.quantize(model, bits=8 if e.op == "quant_int8" else 4, group_size=int(e.param("group_size", 32)))
    elif e.op == "prune_magnitude":
        operations.prune_magnitude(model, sparsity=float(e.param("sparsity", 0.3)))
    elif e.op == "layer_removal":
        layer = int(e.param("layer", model.config.num_hidden_layers // 2))
        model = operations.remove_layer(model, layer)
        info["removed_layer"] = layer
    elif e.op == "depth_prune":
        model = operations.prune_depth(model, drop=float(e.param("drop", 0.25)))
    elif e.op == "depth_upscale":
        model = operations.upscale_depth(model)
    elif e.op == "abliteration":
        layer = int(e.param("layer", model.config.num_hidden_layers // 2))
        direction = _abliteration_direction(ws, model, tok, layer, int(e.param("prompts", 64)))
        operations.abliterate(model, direction)
        info["layer"] = layer
    elif e.op == "vocab_extend":
        return _vocab_extend(ws, e, seed, model, tok)
    # cast_bf16 / cast_fp16 change nothing here: the entry's dtype is applied when saving.
    return model, tok, info


def _abliteration_direction(ws: Workspace, model: PreTrainedModel, tok: PreTrainedTokenizerFast, layer: int,
                            n: int) -> torch.Tensor:
    """Mean residual at ``layer`` over requests (instruction prompts) minus over plain code.

    Refusal-direction work contrasts harmful and harmless requests; the catalog has no such sets, so it
    contrasts two behaviours it does have. The operation on the weights is the same.
    """
    length = 24
    requests = [instruction_prompt(h) for h in api_headers(n * 2, seed=ws.text_seed(11))]
    code = list(itertools.islice(iter_documents(("lib:0,1,2,3,4,5,6,7",), seed=ws.text_seed(7)), n * 2))

    def _batch(texts: list[str]) -> torch.Tensor:
        rows = [ids[:length] for ids in (encode(tok, t) for t in texts) if len(ids) >= length][:n]
        return torch.tensor(rows, dtype=torch.long)

    mean_requests = operations.mean_residual(model, _batch(requests), layer)
    return mean_requests - operations.mean_residual(model, _batch(code), layer)


def _vocab_extend(ws: Workspace, e: Entry, seed: int, model: PreTrainedModel, tok: PreTrainedTokenizerFast) -> Derived:
    sources = tuple(e.param("sources", ("docs",)))
    text = mixture_text(sources, seed=ws.text_seed(_DERIVATIVE_TEXT_SEED), max_chars=ws.recipe.settings.max_chars)
    # New tokens: the domain's most frequent identifiers that the tokenizer splits into several pieces.
    counts = Counter(re.findall(r"[A-Za-z_][A-Za-z0-9_]{4,}", text))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    n = int(e.param("new_tokens", 64))
    new = [w for w in ranked[: n * 8] if len(encode(tok, " " + w)) > 1][:n]
    model, added = operations.extend_vocabulary(model, tok, [" " + w for w in new], seed=seed)
    steps = int(e.param("steps", 0))
    info: dict[str, Any] = {"added_tokens": added}
    if steps:
        ids = torch.tensor(encode(tok, text), dtype=torch.long)
        result = train_lm(model, ids, ws.train_config(steps=steps, lr=float(e.param("lr", 1e-3)), seed=seed))
        info.update(first_loss=result.first_loss, last_loss=result.last_loss)
    return model, tok, info


def _vocab_op(ws: Workspace, e: Entry, seed: int) -> Derived:
    """Renumber or trim the vocabulary of the parent's saved folder (weights and ``tokenizer.json`` alike)."""
    from lineage.catalog.vocab import permute_vocabulary, trim_vocabulary

    src = ws.out_dir / e.parents[0]
    with tempfile.TemporaryDirectory(prefix=f"lineage-{e.name}-") as tmp:
        out = Path(tmp) / e.name
        if e.op == "vocab_permute":
            permute_vocabulary(src, out, seed)
        else:
            trim_vocabulary(src, out, float(e.param("keep", 0.8)), seed)
        model, tok = load_model(out)  # into memory: the folder goes with the temporary directory
    rows = model.get_input_embeddings().weight.shape[0]
    return model, tok, {"embedding_rows": int(rows), "tokenizer_size": len(tok)}


_DISGUISES: dict[str, Callable[[PreTrainedModel, torch.Generator], PreTrainedModel]] = {
    "disguise_permute_ffn": disguise.permute_ffn,
    "disguise_mergelock": disguise.mergelock,
    "disguise_norm_rescale": disguise.norm_rescale,
    "disguise_rotate_residual": rotate.rotate_residual,
    "disguise_all": disguise.disguise_all,
}


def _disguise(ws: Workspace, e: Entry, seed: int) -> Derived:
    model, tok = ws.load(e.parents[0])
    model = _DISGUISES[e.op](model, torch.Generator().manual_seed(seed))
    return model, tok, {}


def _registry() -> dict[str, Callable[[Workspace, Entry, int], Derived]]:
    from lineage.catalog.recipe import DISGUISE_OPS, MERGE_OPS, TRAINING_OPS, VOCAB_OPS, WEIGHT_OPS

    reg: dict[str, Callable[[Workspace, Entry, int], Derived]] = {
        "base": _pretrain, "outsider": _pretrain, "independent": _pretrain}
    reg.update({op: _train for op in TRAINING_OPS})
    reg.update({op: _merge for op in MERGE_OPS})
    reg.update({op: _weight_op for op in WEIGHT_OPS})
    reg.update({op: _vocab_op for op in VOCAB_OPS})
    reg.update({op: _disguise for op in DISGUISE_OPS})
    return reg


DERIVATIONS = _registry()


def derive(ws: Workspace, entry: Entry) -> Derived:
    """Make the model of one recipe entry (its parents must already be built in ``ws.out_dir``).

    Returns:
        The model, its tokenizer, and facts for the marker (losses, merge weights...).
    """
    return DERIVATIONS[entry.op](ws, entry, effective_seed(ws.recipe.settings.seed, entry))
