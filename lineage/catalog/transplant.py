"""Tokenizer transplants: a model's layers behind a new tokenizer, its embedding rows carried over where they can be.

Vocabulary adaptation (a model taught a new language's tokenizer) and tokenizer transplants
(mergekit-tokensurgeon, the OMP transplant of arXiv 2506.06607) keep every layer and rebuild the embedding
(and an untied head) for the new vocabulary: a token the two vocabularies share keeps its row; any other
row is approximated from the old ones. Here the approximation is the fast vocabulary transfer heuristic
(Gee et al. 2022; tokensurgeon's fallback): the new token's text is encoded by the old tokenizer, and its
row is the mean of the old rows of those pieces (the mean of all rows when it encodes to nothing). The
layers, norms and every other tensor are left as they are.

How much the two vocabularies share is set by the new tokenizer (`transplant_tokenizer`): one trained with
`lineage.catalog.bpe` on other text shares what the two texts' merges have in common; one trained on that
text written in another script (`new_script`: every printable ASCII character moved into the Cyrillic block,
every other one into the CJK block, as a new language's text would be) shares nothing but the special tokens
it is given, which a transplant keeps: three (bos, eos and pad) in the battery's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lineage.catalog.bpe import train_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

#: Printable ASCII (33-126) is moved by this offset by `new_script` (into U+0421-U+047E, the Cyrillic block,
#: which no byte-level alphabet uses).
SCRIPT_OFFSET = 0x0400
_CJK = 0x4E00  # where the other non-space characters go (no byte-level alphabet uses the CJK block either)


def new_script(text: str) -> str:
    """`text` with every printable ASCII character moved into the Cyrillic block and every other non-space
    character into the CJK block (spaces and line ends kept): the same text in another script, so that a
    tokenizer trained on it shares no ordinary token with one trained on the original."""
    table = {c: SCRIPT_OFFSET + c for c in range(33, 127)}
    table |= {ord(ch): _CJK + ord(ch) % 0x5000 for ch in set(text) if ord(ch) >= 128 and not ch.isspace()}
    return text.translate(table)


def transplant_tokenizer(text: str, *, vocab_size: int, kind: str, script: bool,
                         keep_specials: tuple[str, str, str, str] | None = None) -> PreTrainedTokenizerFast:
    """A new tokenizer for a transplant, trained on `text` (moved to another script by `new_script` when
    `script`), with the special tokens `keep_specials` (bos, eos, pad, unk) when given."""
    return train_tokenizer(new_script(text) if script else text, vocab_size=vocab_size, kind=kind,
                           specials=keep_specials)  # fmt: skip


def shared_tokens(a: PreTrainedTokenizerFast, b: PreTrainedTokenizerFast) -> set[str]:
    """The token strings two tokenizers share (special and added tokens included)."""
    return set(a.get_vocab()) & set(b.get_vocab())


@torch.no_grad()
def transplant(model: PreTrainedModel, old: PreTrainedTokenizerFast, new: PreTrainedTokenizerFast) -> int:
    """Move `model` (in place) from tokenizer `old` to `new`: shared tokens keep their rows, every other row of
    the embedding and of an untied head is the mean of the old rows of its text's pieces (rows beyond the new
    vocabulary: the mean row); the special-token ids of the config follow `new`.

    Returns:
        How many token strings the two tokenizers share.

    Raises:
        ValueError: `new` has more tokens than the embedding has rows.
    """
    emb = model.get_input_embeddings().weight
    rows = emb.shape[0]
    vocab, old_vocab = new.get_vocab(), old.get_vocab()
    if max(vocab.values()) >= rows:
        raise ValueError(f"the new tokenizer's {len(vocab)} tokens do not fit the {rows} embedding rows")
    sources: dict[int, list[int]] = {}
    for token, i in vocab.items():
        if token in old_vocab:
            sources[i] = [old_vocab[token]]
        else:
            sources[i] = old(new.convert_tokens_to_string([token]), add_special_tokens=False)["input_ids"]
    matrices = [emb]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not emb:
        matrices.append(head.weight)
    for w in matrices:
        before = w.detach().double().clone()
        fresh = before.mean(0).expand(rows, -1).clone()
        for i, pieces in sources.items():
            if pieces:
                fresh[i] = before[pieces].mean(0)
        w.copy_(fresh.to(w.dtype))
    for key, token in (("bos_token_id", new.bos_token), ("eos_token_id", new.eos_token),
                       ("pad_token_id", new.pad_token)):  # fmt: skip
        for config in (model.config, getattr(model, "generation_config", None)):
            if config is not None:
                setattr(config, key, vocab.get(token) if token is not None else None)
    return len(shared_tokens(old, new))


@torch.no_grad()
def redraw_embedding(model: PreTrainedModel, gen: torch.Generator) -> list[torch.nn.Parameter]:
    """Replace the embedding and an untied head (in place) by a fresh draw at the model's initialisation scale
    (`initializer_range`): every layer kept, no row of the old embedding. A regrown embedding trains these
    parameters alone afterwards.

    Returns:
        The redrawn parameters (the embedding, and the head when untied).
    """
    std = float(getattr(model.config, "initializer_range", 0.02))
    emb = model.get_input_embeddings().weight
    params = [emb]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not emb:
        params.append(head.weight)
    for w in params:
        w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.dtype) * std)
    return params
