"""The real SmolLM2-135M-Instruct Q4_1 GGUF, read by lineage, equals transformers' own reading of it.

`smollm2_folder()` is what transformers' GGUF loader (the dequantising reference, with its own Q/K
un-permutation) makes of the file; lineage's reader must give the same tensors under the same names, the
same vocabulary as the saved `tokenizer.json`, a config that resolves to the same layout, and a fingerprint
within distance 1e-3 of the folder's.
"""

from __future__ import annotations

import pytest

from lineage.arch import resolve_model
from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.vocab import find_vocabulary
from tests.real import smollm2_folder, smollm2_gguf

pytestmark = pytest.mark.slow  # the real model dequantised by transformers (once per checkout) and read twice


def test_real_gguf_tensors_equal_transformers_reading() -> None:
    gguf_path, folder = smollm2_gguf(), smollm2_folder()
    with open_checkpoint(gguf_path) as ours, open_checkpoint(folder) as reference:
        assert set(ours.names()) == set(reference.names())
        assert ours.num_parameters == reference.num_parameters
        assert set(ours.dtypes) == {"F32", "Q4_1", "Q8_0"}
        worst = {}
        for name in ours.names():
            assert ours.info(name).shape == reference.info(name).shape, name
            worst[name] = float((ours.tensor(name) - reference.tensor(name)).abs().max())
        assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:3]
        for name, ids in (("model.embed_tokens.weight", [0, 1, 300, 49151, 300]),
                          ("model.layers.7.self_attn.k_proj.weight", [0, 31, 32, 63, 64, 191, 32])):  # fmt: skip
            assert float((ours.rows(name, ids) - reference.rows(name, ids)).abs().max()) <= 1e-6


def test_real_gguf_config_metadata_and_vocabulary() -> None:
    gguf_path, folder = smollm2_gguf(), smollm2_folder()
    with open_checkpoint(gguf_path) as ours, open_checkpoint(folder) as reference:
        a, b = resolve_model(ours), resolve_model(reference)
        assert (a.spec.name, a.num_layers, a.hidden_size, a.vocab_size) == (b.spec.name, b.num_layers, b.hidden_size,
                                                                             b.vocab_size)  # fmt: skip
        assert (a.num_heads, a.num_kv_heads, a.head_dim, a.head) == (b.num_heads, b.num_kv_heads, b.head_dim, b.head)
        assert a.norm_eps == pytest.approx(b.norm_eps)
        for key in ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings"):  # fmt: skip
            assert ours.config[key] == reference.config[key], key
        assert ours.metadata["general.name"] == reference.config["_model_name_or_path"]  # where transformers puts it
        vocab, want = ours.vocabulary, find_vocabulary(folder)
        assert vocab is not None and want is not None
        assert vocab.tokens == want.tokens
        assert vocab.special == want.special


def test_real_gguf_fingerprints_like_its_folder() -> None:
    options = FingerprintOptions(device="cpu")
    fp_gguf = fingerprint_model(smollm2_gguf(), options)
    fp_folder = fingerprint_model(smollm2_folder(), options)
    assert fp_gguf.summary.num_parameters == fp_folder.summary.num_parameters
    assert float(sketch_distance_matrix([fp_gguf], [fp_folder])[0, 0]) < 1e-3
