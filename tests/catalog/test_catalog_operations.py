"""Weight operations: quantisation round trips, magnitude pruning, layer removal, vocabulary extension,
abliteration."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from lineage.catalog import anatomy, operations


@pytest.mark.parametrize("bits", [8, 4])
def test_groupwise_quantisation_levels_and_error(bits: int) -> None:
    w = torch.randn(6, 70, generator=torch.Generator().manual_seed(0))
    q = operations.quantize_groupwise(w, bits=bits, group_size=32)
    qmax = 2 ** (bits - 1) - 1
    for start in range(0, 70, 32):
        group = w[:, start : start + 32]
        scale = group.abs().amax(dim=1, keepdim=True) / qmax
        levels = q[:, start : start + 32] / scale
        assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the integer grid of its group
        assert levels.abs().max() <= qmax + 1e-4
        assert (q[:, start : start + 32] - group).abs().max() <= scale.max() / 2 + 1e-6  # round to nearest


def test_quantize_touches_projections_not_embeddings(tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = tiny_model("llama")
    before = copy.deepcopy(model.state_dict())
    operations.quantize(model, bits=4)
    after = model.state_dict()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])


def test_magnitude_pruning_zeroes_the_smallest_30_percent(tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = operations.prune_magnitude(tiny_model("phi3"), sparsity=0.3)
    w = model.model.layers[0].mlp.gate_up_proj.weight
    assert (w == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_layer_removal_renumbers_layers(real_ids: torch.Tensor, tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = tiny_model("gemma3", tied=True)
    model.config.num_hidden_layers = 2
    smaller = operations.remove_layer(model, 0)
    assert smaller.config.num_hidden_layers == 1 and len(smaller.config.layer_types) == 1
    sd = smaller.state_dict()
    assert torch.equal(sd["model.layers.0.mlp.up_proj.weight"], model.state_dict()["model.layers.1.mlp.up_proj.weight"])
    assert smaller(input_ids=real_ids).logits.shape[-1] == 512


def test_depth_pruning_and_up_scaling_stack_the_right_layers(tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = tiny_model("qwen2")
    model = operations.select_layers(model, [0, 1, 0, 1, 0, 1])  # six layers to cut from
    name = "model.layers.{}.self_attn.q_proj.bias"
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            layer.self_attn.q_proj.bias.add_(float(i))  # every layer told apart
    source = [model.state_dict()[name.format(i)] for i in range(6)]
    pruned = operations.prune_depth(model, drop=0.5)  # the middle three (1, 2, 3) go
    assert pruned.config.num_hidden_layers == 3
    assert all(torch.equal(pruned.state_dict()[name.format(i)], source[j]) for i, j in enumerate([0, 4, 5]))
    upscaled = operations.upscale_depth(model)  # SOLAR: layers 0-3, then 2-5
    assert upscaled.config.num_hidden_layers == 8
    order = [0, 1, 2, 3, 2, 3, 4, 5]
    assert all(torch.equal(upscaled.state_dict()[name.format(i)], source[j]) for i, j in enumerate(order))
    with pytest.raises(ValueError):
        operations.select_layers(model, [0, 9])


def test_vocabulary_extension_grows_embedding_and_tokenizer(tiny_model: Callable[..., torch.nn.Module]) -> None:
    from lineage.catalog.bpe import encode, train_tokenizer

    tok = train_tokenizer("def function(argument):\n    return argument\n" * 300, vocab_size=300, kind="byte_level")
    model = tiny_model("llama")  # vocab 512 > len(tok): the gap is filled with reserved tokens first
    model, added = operations.extend_vocabulary(model, tok, [" zzyzx_token", " qqq_word"], seed=0)
    assert added == 2 and len(tok) == 514
    assert model.get_input_embeddings().weight.shape[0] == 514 and model.lm_head.weight.shape[0] == 514
    assert encode(tok, " zzyzx_token") == [512]


def test_abliteration_removes_the_direction_from_every_residual_write(
        tiny_model: Callable[..., torch.nn.Module]) -> None:
    model = tiny_model("qwen2")
    r = torch.randn(64, generator=torch.Generator().manual_seed(0))
    operations.abliterate(model, r)
    r = r / r.norm()
    assert (model.get_input_embeddings().weight @ r).abs().max().item() < 1e-5
    for layer in anatomy.layers(model):
        for w in anatomy.residual_writers(layer):
            assert (r @ w).abs().max().item() < 1e-5
