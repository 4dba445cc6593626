"""Every GGML type gguf-py can dequantise is read: whole, in row blocks and by rows, at the right bytes.

gguf-py quantises only a few types, so each tensor here is random bytes of the type's block layout: the
expected values are `gguf.quants.dequantize` of exactly those bytes, which checks that the reader finds
each row's bytes (offsets, block sizes, the Q/K row permutation) for types of every block size.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf.constants import GGML_QUANT_SIZES
from gguf.constants import GGMLQuantizationType as Q
from gguf.quants import dequantize

from lineage.io import open_checkpoint

DEQUANTISABLE = sorted({Q.F32, Q.F16, *gguf.quants._type_traits}, key=lambda q: q.value)  # noqa: SLF001
NE0, HEADS, ROWS, VOCAB = 256, 2, 16, 8  # 256: a multiple of every block size


def _bytes(qtype: Q, rows: int, rng: np.random.Generator) -> np.ndarray:
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows, NE0 // block * size), dtype=np.uint8)
    if qtype in (Q.F32, Q.F16, Q.BF16):  # whole floats: keep them finite and small
        kind = {Q.F32: np.float32, Q.F16: np.float16}.get(qtype)
        if kind is None:
            values = rng.standard_normal((rows, NE0)).astype(np.float32)
            return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
        return rng.standard_normal((rows, NE0)).astype(kind).view(np.uint8)
    return raw


@pytest.mark.parametrize("qtype", DEQUANTISABLE, ids=lambda q: q.name)
def test_every_dequantisable_type_reads_its_own_bytes(tmp_path: Path, qtype: Q) -> None:
    rng = np.random.default_rng(qtype.value)
    embed, q_proj = _bytes(qtype, VOCAB, rng), _bytes(qtype, ROWS, rng)
    writer = gguf.GGUFWriter(tmp_path / "t.gguf", "llama")
    writer.add_block_count(1)
    writer.add_embedding_length(NE0)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    for name, raw in (("token_embd.weight", embed), ("blk.0.attn_q.weight", q_proj)):
        if qtype == Q.F32:
            writer.add_tensor(name, raw.view(np.float32))
        elif qtype == Q.F16:
            writer.add_tensor(name, raw.view(np.float16))
        else:
            writer.add_tensor(name, raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    with np.errstate(all="ignore"):  # random scales make NaN/Inf blocks; they must come back as such
        want_embed = dequantize(embed, qtype).astype(np.float32)
        want_q = dequantize(q_proj, qtype).astype(np.float32)
    head = ROWS // HEADS  # the converter's permutation, undone independently of the reader
    want_q = want_q.reshape(HEADS, head // 2, 2, NE0).swapaxes(1, 2).reshape(ROWS, NE0)
    with open_checkpoint(tmp_path / "t.gguf") as ckpt:
        assert ckpt.info("model.embed_tokens.weight").dtype == qtype.name
        for name, want in (
            ("model.embed_tokens.weight", want_embed),
            ("model.layers.0.self_attn.q_proj.weight", want_q),
        ):
            got = ckpt.tensor(name, check_finite=False).numpy()
            np.testing.assert_array_equal(got, want, err_msg=name)
            blocks = torch.cat([b for _, b in ckpt.row_blocks(name, 2 * NE0 * 4, check_finite=False)])
            np.testing.assert_array_equal(blocks.numpy(), want, err_msg=name)
            index = [3, 0, 7, 3]
            np.testing.assert_array_equal(ckpt.rows(name, index, check_finite=False).numpy(), want[index])
