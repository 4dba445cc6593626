"""Fixtures of the catalog tests: tiny models of each architecture, real token ids, tiny recipes, the mini build.

Everything is small enough to keep ``tests/catalog`` near a minute on two CPU cores; the one expensive
fixture, the ``mini`` catalog, is built once per session.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch  # noqa: E402

from tests.checkpoints import tiny_hf_model  # noqa: E402


@pytest.fixture(scope="session")
def real_ids() -> torch.Tensor:
    """Token ids of real text (the json package's source) under a tokenizer trained on it; ids < 512."""
    from lineage.catalog.bpe import encode, train_tokenizer
    from lineage.catalog.text import mixture_text

    text = mixture_text(("pkg:json",), seed=0, max_chars=40_000)
    tok = train_tokenizer(text, vocab_size=512, kind="byte_level")
    ids = encode(tok, text)
    return torch.tensor(ids[: 3 * 48], dtype=torch.long).view(3, 48)


_tiny_model = tiny_hf_model


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., torch.nn.Module]:
    """Factory ``tiny_model(arch, tied=False)``: a fresh copy of a cached tiny model of that architecture."""
    cache: dict[tuple[str, bool], torch.nn.Module] = {}

    def make(arch: str, *, tied: bool = False) -> torch.nn.Module:
        if (arch, tied) not in cache:
            cache[(arch, tied)] = _tiny_model(arch, tied=tied)
        return copy.deepcopy(cache[(arch, tied)])

    return make


TINY_RECIPE = """
[catalog]
seed = 0
seq_len = 32
batch_size = 4
max_chars = 30000
shard_size = "40KB"

[family.tiny]
tokenizer = "byte_level"
vocab = 400
sources = ["pkg:json"]
seed = 1

[family.other]
tokenizer = "metaspace"
vocab = 400
sources = ["pkg:urllib"]
seed = 2

[[base]]
name = "tiny-base"
family = "tiny"
shape = {arch = "llama", hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64, vocab = 400, tied = true}
steps = 8
lr = 3e-3
seed = 1
layout = "sharded"

[[outsider]]
name = "tiny-outsider"
family = "other"
steps = 4
lr = 3e-3
seed = 2
shape = {arch = "gpt_neox", hidden = 32, layers = 1, heads = 4, kv_heads = 4, intermediate = 64, vocab = 400}

[[derivative]]
name = "tiny-ft-a"
op = "finetune"
parent = "tiny-base"
params = { sources = ["pkg:logging"], steps = 4 }
seed = 3

[[derivative]]
name = "tiny-ft-b"
op = "lora"
parent = "tiny-base"
params = { sources = ["pkg:http"], steps = 4 }
seed = 4
dtype = "bfloat16"

[[derivative]]
name = "tiny-dare"
op = "merge_dare_ties"
parents = ["tiny-ft-a", "tiny-ft-b"]
weights = [0.6, 0.4]
params = { density = 0.5 }
seed = 5

[[derivative]]
name = "tiny-rotated"
op = "disguise_rotate_residual"
parent = "tiny-ft-a"
seed = 6

[mini]
models = ["tiny-base", "tiny-ft-a"]
max_steps = 2
"""


@pytest.fixture()
def tiny_recipe(tmp_path: Path) -> Path:
    """A recipe of six very small models (a base, an outsider, two fine-tunes, a DARE merge, a disguise)."""
    path = tmp_path / "recipe.toml"
    path.write_text(TINY_RECIPE, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def mini_catalog(shared_mini_catalog: Path) -> Path:
    """The repository recipe's ``mini`` catalog (`tests/conftest.py`: built once per session); its manifest."""
    return shared_mini_catalog
