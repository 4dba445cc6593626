"""A layer's tensors by role, its attention geometry and its shapes: config.json against the shapes, one line each.

Heads, key/value heads and head size come from config.json checked against the shapes (or from the shapes
alone); multi-head latent attention reads its ranks off the shapes and the head count. Every tensor of a
layer is then checked against the widths, so a wrong shape is named with its file before any product runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from lineage.arch.checks import MATRIX_ROLES, check_shape, config_int, contradiction, model_location
from lineage.arch.spec import ArchSpec
from lineage.errors import CheckpointError


@dataclass(frozen=True)
class LayerTensors:
    """The tensor names of one transformer layer, by role (None where the layout has no such tensor)."""

    index: int
    names: dict[str, str | None]
    experts: int = 0

    def __getitem__(self, role: str) -> str | None:
        return self.names.get(role)


def attention_geometry(reader, spec: ArchSpec, cfg: dict, layer: LayerTensors, hidden: int) -> tuple[int, int, int]:  # noqa: ANN001
    """Heads, kv heads and head size: from config.json checked against the shapes, from the shapes alone when
    config.json gives no head count. A config that contradicts the shapes is refused with both numbers: a
    silent regrouping of the heads would change the sketches (and an edited config would be a disguise)."""
    keys = ("num_attention_heads", "num_key_value_heads", "head_dim")
    heads, kv_cfg, head_cfg = (config_int(reader, cfg, k) for k in keys)
    heads = heads or config_int(reader, cfg, "n_head")  # GPT-2's and GPT-J's spelling
    if spec.qkv_interleaved:
        rows = int(reader.info(layer["qkv_interleaved"]).shape[0])
        if heads is None:
            heads = max(1, rows // (3 * spec.default_head_dim))
        elif rows % (3 * heads):
            contradiction(reader, f"num_attention_heads {heads}", f"'{layer['qkv_interleaved']}' has {rows} rows, "
                           f"not 3 x {heads} heads x a head size")  # fmt: skip
        return heads, heads, rows // (3 * heads)
    if spec.qkv:
        total = int(reader.info(layer["qkv"]).shape[0])
    else:
        q_rows = int(reader.info(layer["q"]).shape[0])
        kv_rows = int(reader.info(layer["k"]).shape[0])
    head_dim = head_cfg
    if layer["q_norm"] and spec.qk_norm_per_head:
        norm = int(reader.info(layer["q_norm"]).shape[0])  # the per-head norm's size is the head size
        if head_cfg is not None and head_cfg != norm:
            contradiction(reader, f"head_dim {head_cfg}", f"the per-head norm '{layer['q_norm']}' has {norm} entries")
        head_dim = norm
    if head_dim is None and heads is None:
        if not spec.qkv and q_rows != kv_rows:
            # Grouped-query attention: which query heads share a key head cannot be read off the shapes,
            # and a guess would change the sketches. Stripping config.json must not be a disguise.
            raise CheckpointError(
                model_location(reader),
                "config.json gives no attention head count (num_attention_heads / head_dim) and the key "
                "projection is narrower than the query (grouped-query attention): restore config.json",
            )
        # No head count at all: the layout's usual head size, else one head of the whole width.
        head_dim = spec.default_head_dim
        if spec.qkv:
            q_rows = head_dim * (hidden // head_dim)
            kv_rows = (total - q_rows) // 2
        if q_rows % head_dim or kv_rows % head_dim or kv_rows <= 0:
            return 1, 1, q_rows if q_rows == kv_rows else min(q_rows, kv_rows)
        if (q_rows // head_dim) % (kv_rows // head_dim):
            return 1, 1, min(q_rows, kv_rows)
        return q_rows // head_dim, kv_rows // head_dim, head_dim
    if head_dim is None:
        width = hidden if spec.qkv else q_rows
        if width % heads:
            what = "the hidden size" if spec.qkv else f"'{layer['q']}'"
            contradiction(reader, f"num_attention_heads {heads}", f"{what} has {width} rows, not a multiple of it")
        head_dim = width // heads
    if spec.qkv:
        q_rows = head_dim * (heads if heads is not None else hidden // head_dim)
        rest = total - q_rows
        if rest <= 0 or rest % (2 * head_dim):
            contradiction(reader, f"{q_rows // head_dim} query heads of head_dim {head_dim} ({q_rows} rows)",
                           f"'{layer['qkv']}' has {total} rows, leaving {rest} for keys and values")  # fmt: skip
        kv_rows = rest // 2
    q_name, k_name = layer["q"] or layer["qkv"], layer["k"] or layer["qkv"]
    if q_rows % head_dim:
        contradiction(reader, f"head_dim {head_dim}", f"'{q_name}' has {q_rows} query rows, not a multiple of it")
    if kv_rows % head_dim or kv_rows <= 0:
        contradiction(reader, f"head_dim {head_dim}", f"'{k_name}' has {kv_rows} key rows, not a multiple of it")
    num_heads, num_kv = q_rows // head_dim, kv_rows // head_dim
    if heads is not None and heads != num_heads:
        contradiction(reader, f"num_attention_heads {heads} x head_dim {head_dim} = {heads * head_dim} query rows",
                       f"'{q_name}' has {q_rows}")  # fmt: skip
    if kv_cfg is not None and kv_cfg != num_kv:
        contradiction(reader, f"num_key_value_heads {kv_cfg} x head_dim {head_dim} = {kv_cfg * head_dim} key rows",
                       f"'{k_name}' has {kv_rows}")  # fmt: skip
    if num_heads % num_kv:
        contradiction(reader, f"{num_heads} query heads", f"{num_kv} key/value heads, which do not divide them")
    return num_heads, num_kv, head_dim


def check_shapes(reader, spec: ArchSpec | None, layer: LayerTensors, hidden: int, q_rows: int, kv_rows: int,
                  head_dim: int, attention: bool = True) -> None:  # noqa: ANN001
    """Every tensor of a layer must fit the model's widths: a wrong shape is named with its file, never left
    to fail deep inside a matrix product. `attention` False checks the FFN side alone."""
    qk_norm = (head_dim, head_dim) if spec is None or spec.qk_norm_per_head else (q_rows, kv_rows)
    expected = {
        "q": (q_rows, hidden), "k": (kv_rows, hidden), "v": (kv_rows, hidden),
        "qkv": (q_rows + 2 * kv_rows, hidden), "qkv_interleaved": (q_rows + 2 * kv_rows, hidden),
        "o": (hidden, q_rows), "attn_norm": (hidden,), "ffn_norm": (hidden,),
        "attn_post_norm": (hidden,), "ffn_post_norm": (hidden,), "q_norm": qk_norm[:1], "k_norm": qk_norm[1:],
        "attn_sub_norm": (q_rows,),
        "attn_norm_bias": (hidden,), "ffn_norm_bias": (hidden,), "router": (layer.experts, hidden),
        "shared_router": (1, hidden),
    }  # fmt: skip
    if not attention:
        keep = ("ffn_norm", "ffn_norm_bias", "ffn_post_norm", "router", "shared_router")
        expected = {r: expected[r] for r in keep}
    # Each FFN (the dense one, each expert, the shared expert) has its own width, read off its gate or up.
    for ffn in ("", *(f"expert.{e}." for e in range(layer.experts)), "shared."):
        width = None
        for role in ("gate", "up", "gate_up"):
            if layer[ffn + role]:
                rows = int(reader.info(layer[ffn + role]).shape[0])
                width = rows // 2 if role == "gate_up" else rows
                break
        if width is None:
            continue
        expected |= {ffn + "gate": (width, hidden), ffn + "up": (width, hidden), ffn + "gate_up": (2 * width, hidden),
                     ffn + "down": (hidden, width)}  # fmt: skip
        if ffn == "":
            expected["ffn_sub_norm"] = (width,)
    # A bias has one entry per output row of its matrix.
    expected |= {f"{role}_bias": shape[:1] for role, shape in expected.items() if is_matrix(role)}
    for role, shape in expected.items():
        check_shape(reader, layer[role], shape, hidden)


def latent_geometry(reader, cfg: dict, layer: LayerTensors) -> tuple[int, int, int, tuple[int, int, int]]:  # noqa: ANN001
    """`(heads, heads, value head size, (key size without rope, rope, rank))` of latent attention, off the
    shapes and the head count, which config.json must give (the shapes leave it open)."""
    heads = config_int(reader, cfg, "num_attention_heads")
    if heads is None:
        raise CheckpointError(
            model_location(reader),
            "config.json gives no num_attention_heads, which multi-head latent attention's shapes leave open: "
            "restore config.json",
        )
    rank = int(reader.info(layer["kv_a_norm"]).shape[0])
    rope = int(reader.info(layer["kv_a"]).shape[0]) - rank
    q_rows = int(reader.info(layer["q_b"] or layer["q"]).shape[0])
    kv_rows = int(reader.info(layer["kv_b"]).shape[0])
    if rope <= 0 or q_rows % heads or kv_rows % heads or q_rows // heads <= rope:
        contradiction(reader, f"num_attention_heads {heads}", f"'{layer['kv_b']}' has {kv_rows} rows and the query "
                      f"{q_rows}, with a rotary key of {rope} (not whole heads)")  # fmt: skip
    nope = q_rows // heads - rope
    value = kv_rows // heads - nope
    if value <= 0:
        contradiction(reader, f"num_attention_heads {heads}", f"'{layer['kv_b']}' has {kv_rows} rows: no value rows")
    return heads, heads, value, (nope, rope, rank)


def check_latent_shapes(reader, layer: LayerTensors, hidden: int, heads: int, value: int,  # noqa: ANN001
                         latent: tuple[int, int, int]) -> None:  # fmt: skip
    nope, rope, rank = latent
    q_in = int(reader.info(layer["q_a"]).shape[0]) if layer["q_a"] else hidden
    expected = {
        "kv_a": (rank + rope, hidden), "kv_a_norm": (rank,), "kv_b": (heads * (nope + value), rank),
        "q_a": (q_in, hidden), "q_a_norm": (q_in,), "q_b": (heads * (nope + rope), q_in),
        "q": (heads * (nope + rope), hidden), "o": (hidden, heads * value), "attn_norm": (hidden,),
    }  # fmt: skip
    for role, shape in expected.items():
        check_shape(reader, layer[role], shape, hidden)
    check_shapes(reader, None, layer, hidden, 0, 0, 0, attention=False)


def is_matrix(role: str) -> bool:
    return role.rpartition(".")[2] in MATRIX_ROLES
