"""The battery's edits that used to hide a derivative do what they say: width pruning cuts the width, keeping the
most active coordinates; a transplant to another script shares exactly the three special tokens; a redrawn
embedding keeps no row and no layer changes. Each test fails if its edit is silently a no-op."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from lineage.catalog import transplant, width
from lineage.catalog.battery import TRANSPLANT_SPECIALS
from lineage.catalog.bpe import BOS, EOS, PAD, train_tokenizer
from lineage.catalog.text import mixture_text


def _layer_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if ".layers." in k}


@pytest.mark.parametrize(("arch", "tied"), [("llama", True), ("qwen2", False), ("gemma3", True)])
def test_width_pruning_cuts_the_width_keeping_the_most_active_coordinates(
    arch: str, tied: bool, real_ids: torch.Tensor, tiny_model: Callable[..., torch.nn.Module]
) -> None:
    parent = tiny_model(arch, tied=tied)
    importance = width.activation_importance(parent, real_ids)
    pruned = width.prune_width(parent, real_ids)
    assert (pruned.config.hidden_size, pruned.config.intermediate_size) == (48, 64)  # from 64 and 96
    assert pruned.config.num_hidden_layers == parent.config.num_hidden_layers
    # Every kept embedding column is the parent's column of a top-48 coordinate, most important first.
    old, new = parent.get_input_embeddings().weight, pruned.get_input_embeddings().weight
    top = torch.argsort(importance.residual, descending=True)[:48]
    assert torch.equal(new, old[:, top])
    down = parent.model.layers[0].mlp.down_proj.weight
    units = torch.argsort(importance.units[0], descending=True)[:64]
    assert torch.equal(pruned.model.layers[0].mlp.down_proj.weight, down[top][:, units])
    logits = pruned(input_ids=real_ids).logits
    assert logits.shape == (*real_ids.shape, parent.config.vocab_size) and torch.isfinite(logits).all()


def test_measured_importance_is_not_the_weight_stand_in(real_ids: torch.Tensor,
                                                        tiny_model: Callable[..., torch.nn.Module]) -> None:
    parent = tiny_model("llama", tied=True)
    state, config = parent.state_dict(), parent.config.to_dict()
    by_weight, _ = width.width_pruned(state, config, 48, 64)
    measured, _ = width.width_pruned(state, config, 48, 64, importance=width.activation_importance(parent, real_ids))
    assert not torch.equal(by_weight["model.embed_tokens.weight"], measured["model.embed_tokens.weight"])


def test_width_pruning_refuses_a_mixture(real_ids: torch.Tensor, tiny_model: Callable[..., torch.nn.Module]) -> None:
    with pytest.raises(ValueError, match="dense FFNs"):
        width.prune_width(tiny_model("mixtral"), real_ids)


@pytest.fixture(scope="module")
def tokenizers() -> tuple:
    base = train_tokenizer(mixture_text(("pkg:json",), seed=0, max_chars=40_000), vocab_size=512, kind="byte_level")
    other = mixture_text(("pkg:email",), seed=0, max_chars=40_000)
    script = transplant.transplant_tokenizer(other, vocab_size=512, kind="metaspace", script=True,
                                             keep_specials=TRANSPLANT_SPECIALS)  # fmt: skip
    plain = transplant.transplant_tokenizer(other, vocab_size=512, kind="byte_level", script=False)
    return base, script, plain


def test_a_transplant_to_another_script_shares_only_the_three_special_tokens(tokenizers: tuple) -> None:
    base, script, plain = tokenizers
    assert transplant.shared_tokens(base, script) == {BOS, EOS, PAD}
    assert len(transplant.shared_tokens(base, plain)) > 100  # the same script shares its bytes and merges


def test_a_transplant_keeps_shared_rows_and_every_layer_and_redraws_the_rest(
    tokenizers: tuple, tiny_model: Callable[..., torch.nn.Module]
) -> None:
    base, script, _ = tokenizers
    model = tiny_model("qwen2")  # an untied head: both matrices are rebuilt
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert transplant.transplant(model, base, script) == 3
    old_vocab, new_vocab = base.get_vocab(), script.get_vocab()
    for matrix in ("model.embed_tokens.weight", "lm_head.weight"):
        new, old = model.state_dict()[matrix], before[matrix]
        for token in (BOS, EOS, PAD):
            assert torch.equal(new[new_vocab[token]], old[old_vocab[token]])
        moved = [i for t, i in new_vocab.items() if t not in old_vocab]
        assert len(moved) > 200 and not any(torch.equal(new[i], old[i]) for i in moved)
    assert all(torch.equal(v, before[k]) for k, v in _layer_tensors(model).items())
    assert model.config.bos_token_id == new_vocab[BOS]


def test_a_redrawn_embedding_keeps_no_row_and_every_layer(tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = tiny_model("qwen2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = transplant.redraw_embedding(model, torch.Generator().manual_seed(0))
    assert len(fresh) == 2  # the embedding and the untied head
    for matrix in ("model.embed_tokens.weight", "lm_head.weight"):
        assert not (model.state_dict()[matrix] == before[matrix]).all(dim=1).any()
    assert all(torch.equal(v, before[k]) for k, v in _layer_tensors(model).items())


def test_every_derivation_a_layout_skips_says_why() -> None:
    from lineage.catalog.battery import DERIVATIONS, UNMADE, WHY_UNMADE

    skipped = {kind for kinds in UNMADE.values() for kind in kinds}
    assert skipped <= set(WHY_UNMADE) and set(WHY_UNMADE) <= set(DERIVATIONS)
