"""The calibration battery: many models that share a width and a tokenizer but no weights, and derivatives.

The false-accusation rate of `derived` is measured on pairs that are known to be unrelated and are as hard
as they come: models of one width, one tokenizer and one kind of data, of every depth from 2 to 40 layers,
of five layouts (Llama, Qwen2 with its biases, Gemma 3 with its extra norms and GeGLU, a Mixtral mixture of
experts, GPT-NeoX with LayerNorms and a non-gated FFN), some left at their random initialisation, some
trained from different seeds on the same text (twins), and students distilled from a trained teacher's
logits (same function as far as training gets, no shared weight). Any two of them whose lineages differ are
a null pair. Power is measured on derivatives of trained bases (the mixture among them) made by the
operations the hub applies: fine-tuning, LoRA, linear and TIES merges, int4, depth pruning, depth up-scaling
(SOLAR's recipe), a vocabulary permutation, and every function-preserving disguise at once followed by int4
(not for the mixture: the disguises are written for dense FFNs, `UNMADE`). One more derivative of each
dense base marks the known blind spot: every disguise at once with the FFN units' signs flipped as well,
alone and then rounded to int4 (`BLIND_SPOTS`), which no exact test can see (the unit matching rule should);
their power is measured and reported apart.

The edits that used to hide a derivative are made too (`HIDING`): width pruning the Minitron way (residual
width -25% and FFN -33% kept by activation importance, then a short distillation from the parent;
`lineage.catalog.width`), alone and with a quarter of the layers dropped; tokenizer transplants at three
overlaps (`lineage.catalog.transplant`: a byte-level and a SentencePiece-style tokenizer trained on other text,
and one trained on that text in another script, sharing only the three special tokens), the last also with a
residual rotation and MergeLock maps (a blind spot of the exact tests before the frame units); and the embedding
replaced by a fresh draw, left so, retrained with the layers frozen, or retrained and then the whole model tuned. Models
of a narrower width (that of the pruned ones), random and trained, are independents: the null of the test
across widths.

Everything is seeded by the battery seed (initialisations, data order, disguises), so `--seed 1` gives a
fresh battery of the same structure: constants are chosen on one seed and reported on another.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lineage.catalog import disguise, merge, operations, rotate, transplant
from lineage.catalog.architectures import Shape, make_model
from lineage.catalog.bpe import BOS, EOS, PAD, encode, train_tokenizer
from lineage.catalog.save import load_model, quiet_transformers, save_model
from lineage.catalog.text import mixture_text
from lineage.catalog.train import TrainConfig, distill_lm, train_lm, train_lora
from lineage.catalog.vocab import permute_vocabulary
from lineage.catalog.width import prune_width

MANIFEST = "models_manifest.csv"
PRETRAIN_TEXT = ("lib:0,1,2,3", "docs")
TUNE_TEXT = ("pkg:unittest", "pkg:email")
DERIVATIONS: tuple[str, ...] = (
    "finetune", "lora", "merge-linear", "merge-ties", "int4", "depth-pruned", "depth-upscaled",
    "vocab-permuted", "disguised-int4", "disguised-signed", "disguised-signed-int4",
    "width-pruned", "width-depth-pruned", "transplant-bpe", "transplant-metaspace", "transplant-3",
    "transplant-3-rotated", "embedding-random", "embedding-regrown", "embedding-regrown-tuned",
)  # fmt: skip
#: The derivations made of edits that used to hide a derivative (other widths, new tokenizers, new embeddings).
HIDING: tuple[str, ...] = DERIVATIONS[DERIVATIONS.index("width-pruned"):]
#: Derivations no exact test can see (measured, to show it): every disguise at once *and* FFN units' signs
#: flipped, then also rounded to int4 (the unit matching rule, `lineage.compare.matching`, is what should see
#: these two). (A transplant to a vocabulary sharing 3 tokens then rotated with MergeLock maps was one until the
#: frame units, pipeline 10: the rotation redraws the coordinates the residual groups read, and the anchor unit
#: groups read anchors the two vocabularies do not share, but the units' profiles on the weight frame stay.)
BLIND_SPOTS: tuple[str, ...] = ("disguised-signed", "disguised-signed-int4")
#: Why a derivation is not made of some layouts' bases.
WHY_UNMADE: dict[str, str] = {
    "disguised-int4": "the disguises map dense FFN modules, not the 3-D expert stacks a mixture keeps",
    "disguised-signed": "the disguises map dense FFN modules, not the 3-D expert stacks a mixture keeps",
    "disguised-signed-int4": "the disguises map dense FFN modules, not the 3-D expert stacks a mixture keeps",
    "width-pruned": "width pruning cuts dense FFN modules, not the 3-D expert stacks a mixture keeps",
    "width-depth-pruned": "width pruning cuts dense FFN modules, not the 3-D expert stacks a mixture keeps",
    "transplant-3-rotated": "a residual rotation cannot keep Gemma 3's post-norms, nor map a mixture's experts",
}
#: Derivations not made of a layout's bases (the reason of each in `WHY_UNMADE`).
UNMADE: dict[str, tuple[str, ...]] = {
    "mixtral": ("disguised-int4", "disguised-signed", "disguised-signed-int4", "width-pruned", "width-depth-pruned",
                "transplant-3-rotated"),
    "gemma3": ("transplant-3-rotated",),
}
#: Residual width and FFN units kept by width pruning, and the width of the narrower independent models.
RESIDUAL_KEEP, FFN_KEEP = 0.75, 2 / 3
#: Token strings the `transplant-3` tokenizer shares with the battery's: its bos, eos and pad tokens.
TRANSPLANT_SPECIALS = (BOS, EOS, PAD, "<unk>")


@dataclass(frozen=True)
class BatterySpec:
    """The structure of a battery.

    Attributes:
        width, heads, kv_heads, ffn, vocab: the shared shape (every model has it).
        layouts: transformers architectures (`lineage.catalog.architectures`).
        random_depths: depths of the models left at their random initialisation (one per layout).
        trained_depths: depths of the trained models; `twins` of each per layout, from different seeds.
        steps: pretraining steps; derivatives tune for a third of that.
        students: (layout, depth) of distilled students, each distilled from the first twin of its kind.
        bases: (layout, depth) of the trained models the derivatives are made of (the first twin).
        narrow_depths: depths of the independent models of the pruned width (`RESIDUAL_KEEP` of `width`, FFN
            `FFN_KEEP` of `ffn`): one random of each layout, one trained of each base's layout.
        max_chars: text per mixture.
    """

    width: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    layouts: tuple[str, ...]
    random_depths: tuple[int, ...]
    trained_depths: tuple[int, ...]
    twins: int
    steps: int
    students: tuple[tuple[str, int], ...]
    bases: tuple[tuple[str, int], ...]
    narrow_depths: tuple[int, ...] = ()
    max_chars: int = 400_000


#: The layouts of every battery: three dense RMSNorm ones, a mixture of experts and a LayerNorm one.
LAYOUTS: tuple[str, ...] = ("llama", "qwen2", "gemma3", "mixtral", "gpt_neox")

SIZES: dict[str, BatterySpec] = {
    "full": BatterySpec(
        width=64, heads=4, kv_heads=2, ffn=128, vocab=1024, layouts=LAYOUTS,
        random_depths=(2, 4, 8, 12, 16, 20, 24, 28, 30, 32, 36, 40), trained_depths=(4, 12, 24, 32), twins=2,
        steps=150, students=(("llama", 12), ("qwen2", 24), ("gemma3", 12)),
        bases=(("llama", 24), ("qwen2", 24), ("gemma3", 24), ("mixtral", 24)), narrow_depths=(24,),
    ),
    "small": BatterySpec(
        width=32, heads=4, kv_heads=2, ffn=64, vocab=512, layouts=LAYOUTS,
        random_depths=(2, 6, 12, 24, 40), trained_depths=(4, 12), twins=2, steps=30,
        students=(("llama", 12),), bases=(("llama", 12), ("qwen2", 12), ("mixtral", 12)), narrow_depths=(12,),
        max_chars=120_000,
    ),
}


@dataclass(frozen=True)
class _Row:
    name: str
    role: str  # base (has derivatives), independent, derivative
    family: str
    base: str
    derivation: str
    depth: int


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"battery|{seed}|{name}".encode()).digest()[:4], "big")


class _Builder:
    def __init__(self, spec: BatterySpec, out: Path, seed: int, progress: Callable[[str], None] | None) -> None:
        self.spec, self.out, self.seed, self.progress = spec, out, seed, progress
        text = mixture_text(PRETRAIN_TEXT, seed=_seed(seed, "text") % 1000, max_chars=spec.max_chars)
        self.tok = train_tokenizer(text, vocab_size=spec.vocab, kind="byte_level")
        self.ids = torch.tensor(encode(self.tok, text), dtype=torch.long)
        self.tune = mixture_text(TUNE_TEXT, seed=_seed(seed, "tune") % 1000, max_chars=spec.max_chars // 2)
        self.tune_ids = torch.tensor(encode(self.tok, self.tune), dtype=torch.long)
        self.rows: list[_Row] = []
        self.tokenizers: dict[str, object] = {}

    def cfg(self, steps: int, lr: float, name: str) -> TrainConfig:
        return TrainConfig(steps=steps, lr=lr, batch_size=8, seq_len=64, seed=_seed(self.seed, name))

    def fresh(self, layout: str, depth: int, name: str, narrow: bool = False):  # noqa: ANN201 - a transformers model
        s = self.spec
        # A mixture's grouped matmul needs rows of a multiple of 16 bytes: the narrow FFN is a multiple of 8.
        width, ffn = (round(s.width * RESIDUAL_KEEP), 8 * round(s.ffn * FFN_KEEP / 8)) if narrow else (s.width, s.ffn)
        shape = Shape(layout, width, depth, s.heads, s.kv_heads, ffn, s.vocab, tied=layout != "qwen2")
        tok = self.tok
        return make_model(shape, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id,
                          seed=_seed(self.seed, name))  # fmt: skip

    def save(self, model, row: _Row, tokenizer=None) -> None:  # noqa: ANN001
        save_model(model, tokenizer or self.tok, self.out / row.name, layout="single", dtype="float32",
                   shard_size="1GB", marker={"hash": row.name, "battery_seed": self.seed})  # fmt: skip
        self.rows.append(row)
        if self.progress:
            self.progress(row.name)

    def independents(self) -> None:
        s = self.spec
        for layout, depth in itertools.product(s.layouts, s.random_depths):
            name = f"{layout}-d{depth}-random"
            self.save(self.fresh(layout, depth, name), _Row(name, "independent", layout, name, "random init", depth))
        for layout, depth, twin in itertools.product(s.layouts, s.trained_depths, range(s.twins)):
            name = f"{layout}-d{depth}-trained-{twin}"
            model = self.fresh(layout, depth, name)
            train_lm(model, self.ids, self.cfg(s.steps, 3e-3, name))
            role = "base" if (layout, depth) in s.bases and twin == 0 else "independent"
            self.save(model, _Row(name, role, layout, name, "trained", depth))
        for layout, depth in s.students:
            name = f"{layout}-d{depth}-student"
            teacher, _ = load_model(self.out / f"{layout}-d{depth}-trained-0")
            student = self.fresh(layout, depth, name)
            distill_lm(student, teacher, self.ids, self.cfg(s.steps, 3e-3, name))
            self.save(student, _Row(name, "independent", layout, name, f"distilled from {layout}-d{depth}-trained-0",
                                    depth))  # fmt: skip
        self.narrow()

    def narrow(self) -> None:
        """Independent models of the pruned width: random of every layout, trained of every base's layout."""
        s = self.spec
        width = round(s.width * RESIDUAL_KEEP)
        trained = dict.fromkeys(layout for layout, _ in s.bases)
        for depth in s.narrow_depths:
            for layout in s.layouts:
                name = f"{layout}-w{width}-d{depth}-random"
                self.save(self.fresh(layout, depth, name, narrow=True),
                          _Row(name, "independent", layout, name, "random init", depth))  # fmt: skip
            for layout in trained:
                name = f"{layout}-w{width}-d{depth}-trained"
                model = self.fresh(layout, depth, name, narrow=True)
                train_lm(model, self.ids, self.cfg(s.steps, 3e-3, name))
                self.save(model, _Row(name, "independent", layout, name, "trained", depth))

    def derivatives(self) -> None:
        for layout, depth in self.spec.bases:
            base = f"{layout}-d{depth}-trained-0"
            for kind in (k for k in DERIVATIONS if k not in UNMADE.get(layout, ())):
                name = f"{base}+{kind}"
                model = self.derive(kind, base, name)
                if model is not None:
                    row = _Row(name, "derivative", layout, base, kind, model.config.num_hidden_layers)
                    self.save(model, row, self.tokenizers.get(kind.removesuffix("-rotated")))

    def derive(self, kind: str, base: str, name: str):  # noqa: ANN201 - a transformers model or None
        steps = max(10, self.spec.steps // 3)
        model, _ = load_model(self.out / base)
        if kind == "finetune":
            train_lm(model, self.tune_ids, self.cfg(steps, 1e-3, name))
        elif kind == "lora":
            model, _ = train_lora(model, self.tune_ids, self.cfg(steps, 1e-2, name), rank=4, alpha=16)
        elif kind in ("merge-linear", "merge-ties"):
            other, _ = load_model(self.out / base)
            train_lm(model, self.tune_ids, self.cfg(steps, 1e-3, name + "/a"))
            train_lm(other, self.ids, self.cfg(steps, 1e-3, name + "/b"))
            parent, _ = load_model(self.out / base)
            method = kind.split("-")[1]
            merged = merge.merge_state_dicts(method, [model.state_dict(), other.state_dict()], [0.5, 0.5],
                                             base=parent.state_dict(), density=0.5)  # fmt: skip
            model.load_state_dict(merged)
        elif kind == "int4":
            operations.quantize(model, bits=4)
        elif kind == "depth-pruned":
            model = operations.prune_depth(model, drop=0.25)
        elif kind == "depth-upscaled":
            model = operations.upscale_depth(model)
        elif kind == "vocab-permuted":
            permute_vocabulary(self.out / base, self.out / name, _seed(self.seed, name))
            self.rows.append(_Row(name, "derivative", self.rows_family(base), base, kind, self.depth(base)))
            return None
        elif kind == "disguised-int4":
            model = disguise.disguise_all(model, torch.Generator().manual_seed(_seed(self.seed, name)))
            operations.quantize(model, bits=4)
        elif kind in ("disguised-signed", "disguised-signed-int4"):
            # Seeded by the base's signed disguise: the int4 one rounds that very model, so the two differ by int4.
            gen = torch.Generator().manual_seed(_seed(self.seed, f"{base}+disguised-signed"))
            model = disguise.disguise_all(disguise.rescale_ffn(model, gen, signed=True), gen)
            if kind == "disguised-signed-int4":
                operations.quantize(model, bits=4)
        elif kind in HIDING:
            model = self.hide(kind, model, base, name)
        return model

    def hide(self, kind: str, model, base: str, name: str):  # noqa: ANN001, ANN201 - transformers models
        """The derivations of `HIDING`: other widths, new tokenizers, new embeddings."""
        steps = max(10, self.spec.steps // 3)
        gen = torch.Generator().manual_seed(_seed(self.seed, name))
        if kind in ("width-pruned", "width-depth-pruned"):
            parent = model
            if kind == "width-depth-pruned":
                model = operations.prune_depth(model, drop=0.25)
            model = prune_width(model, self.windows(gen), residual_keep=RESIDUAL_KEEP, ffn_keep=FFN_KEEP)
            distill_lm(model, parent, self.ids, self.cfg(steps, 1e-3, name))
        elif kind.startswith("transplant"):
            transplant.transplant(model, self.tok, self.transplant_tokenizer(kind.removesuffix("-rotated")))
            if kind.endswith("-rotated"):
                model = rotate.rotate_residual(disguise.mergelock(model, gen), gen)
        else:  # the embedding (and an untied head) redrawn; regrown with every other parameter frozen
            fresh = transplant.redraw_embedding(model, gen)
            if kind != "embedding-random":
                kept = [p for p in model.parameters() if all(p is not f for f in fresh)]
                for p in kept:
                    p.requires_grad_(False)
                train_lm(model, self.ids, self.cfg(steps, 3e-3, name))
                for p in kept:
                    p.requires_grad_(True)
            if kind == "embedding-regrown-tuned":
                train_lm(model, self.tune_ids, self.cfg(steps, 1e-3, name + "/tune"))
        return model

    def windows(self, gen: torch.Generator, batch: int = 16, seq: int = 64) -> torch.Tensor:
        """Calibration windows of the pretraining text (the importance of width pruning is read on them)."""
        starts = torch.randint(0, self.ids.numel() - seq, (batch,), generator=gen).tolist()
        return torch.stack([self.ids[i : i + seq] for i in starts])

    def transplant_tokenizer(self, kind: str):  # noqa: ANN201 - a tokenizer
        """The new tokenizer of a transplant, trained once per battery on the tuning text: byte-level
        (`transplant-bpe`), SentencePiece-style (`transplant-metaspace`), or SentencePiece-style on that text
        in another script, keeping the battery's bos, eos and pad (`transplant-3`)."""
        if kind not in self.tokenizers:
            script = kind == "transplant-3"
            self.tokenizers[kind] = transplant.transplant_tokenizer(
                self.tune, vocab_size=self.spec.vocab, kind="byte_level" if kind == "transplant-bpe" else "metaspace",
                script=script, keep_specials=TRANSPLANT_SPECIALS if script else None)  # fmt: skip
        return self.tokenizers[kind]

    def rows_family(self, name: str) -> str:
        return next(r.family for r in self.rows if r.name == name)

    def depth(self, name: str) -> int:
        return next(r.depth for r in self.rows if r.name == name)

    def write_manifest(self) -> Path:
        path = self.out / MANIFEST
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["name", "path", "family", "base", "role", "derivation", "layers"])
            for r in self.rows:
                w.writerow([r.name, r.name, r.family, r.base, r.role, r.derivation, r.depth])
        return path


def build_battery(out: str | Path, *, size: str = "full", seed: int = 0,
                  progress: Callable[[str], None] | None = None) -> Path:
    """Build the battery into folder `out` and return its manifest.

    Args:
        out: destination folder (models are replaced).
        size: `full` or `small` (a few minutes, for tests).
        seed: the battery seed.
        progress: called with each model's name once it is saved.

    Returns:
        The path of `models_manifest.csv` (columns `name,path,family,base,role,derivation,layers`).
    """
    if size not in SIZES:
        raise ValueError(f"battery size {size!r}: use one of {', '.join(SIZES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    # Models this narrow train fastest on one thread, and several threads on a busy machine thrash.
    torch.set_num_threads(1)
    try:
        with quiet_transformers():
            builder = _Builder(SIZES[size], out, seed, progress)
            builder.independents()
            builder.derivatives()
            return builder.write_manifest()
    finally:
        torch.set_num_threads(threads)
