"""The README's architecture table, from `lineage.arch.spec.ARCHITECTURES` (`python -m tests.arch.readme_table`)."""

from __future__ import annotations

from lineage.arch.spec import ARCHITECTURES, ArchSpec

#: The weight test's groups each symmetry allows (`lineage.compare.identity`).
GROUPS = {"residual": "embedding, attention, ffn, seeded residual", "ffn": "ffn units", "value": "value units"}


def _reads(spec: ArchSpec) -> str:
    parts = []
    if spec.latent:
        parts.append("latent attention")
    if spec.qkv or spec.qkv_interleaved:
        parts.append("fused qkv" + (" (per head)" if spec.qkv_interleaved else ""))
    if spec.attn_norm and spec.attn_norm == spec.ffn_norm:
        parts.append("parallel block")
    if spec.attn_post_norm:
        parts.append("post-norms" + ("" if spec.attn_norm else " only"))
    if spec.transposed:
        parts.append("Conv1D [in, out]")
    ex = spec.experts
    if ex:
        kind = "stacked experts" if ex.stacked else "experts"
        parts.append(kind + (" + shared" if ex.shared else "") + (", interleaved gate/up" if ex.interleaved else ""))
    if spec.gate_up or (ex and ex.gate_up):
        parts.append("fused gate_up")
    if not (spec.gate or spec.gate_up or (ex and (ex.gate or ex.gate_up))):
        parts.append("no gate")
    norm = "LayerNorm" if spec.norm == "layer" else "RMSNorm"
    parts.append(norm + (" (1 + w)" if spec.gain_offset else ""))
    parts.append(spec.activation)
    if spec.mixer:
        parts.append("hybrid: " + spec.mixer[1].split(":")[0] + " unread")
    return ", ".join(parts)


def table() -> str:
    """Markdown rows: layout, config model types, what it reads, the groups tested."""
    rows = ["| layout | model types | layout facts | groups tested |", "|---|---|---|---|"]
    for spec in ARCHITECTURES:
        groups = ", ".join(GROUPS[s] for s in ("residual", "ffn", "value") if s in spec.symmetries)
        types = ", ".join(spec.config_types) or spec.name
        rows.append(f"| {spec.name} | {types} | {_reads(spec)} | {groups} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
