"""One BPE tokenizer per family, trained on that family's mixture and shared by all its sizes.

Real families differ in their tokenizers as much as in their weights: vocabulary size, special tokens,
and the pre-tokenizer (GPT-style byte-level for Llama 3, Qwen and GPT-NeoX; SentencePiece-style
"metaspace" with byte fallback for Gemma, Mistral and Phi). Both styles are trained here with the
`tokenizers` library and wrapped as a `PreTrainedTokenizerFast`, so `save_pretrained` writes the same
`tokenizer.json` a hub checkpoint carries.

Training is deterministic for a given text (the BPE trainer breaks ties by byte order), which the build
relies on: the same tokenizer gives the same token ids, hence the same weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TOKENIZER_KINDS = ("byte_level", "metaspace")
BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
SP_SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")  # SentencePiece-style names for metaspace tokenizers


def train_tokenizer(text: str, *, vocab_size: int, kind: str,
                    specials: tuple[str, str, str, str] | None = None) -> PreTrainedTokenizerFast:
    """Train a BPE tokenizer on ``text``.

    Args:
        text: the family's training text.
        vocab_size: the target vocabulary, special tokens included (the trainer may stop short when the
            text has fewer merges to offer; models pad their embedding to the recipe's size anyway).
        kind: ``byte_level`` (GPT-2 style) or ``metaspace`` (SentencePiece style, byte fallback).
        specials: the bos, eos, pad and unk tokens' strings, when not the kind's own (a tokenizer transplant
            that keeps its base's special tokens).

    Returns:
        A fast tokenizer with bos/eos/pad (and unk) set.

    Example:
        >>> tok = train_tokenizer("def f(x):\\n    return x\\n" * 50, vocab_size=300, kind="byte_level")
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind {kind!r}: use one of {TOKENIZER_KINDS}")
    if kind == "byte_level":
        specials = list(specials or (BOS, EOS, PAD, UNK))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        specials = list(specials or SP_SPECIALS)
        tok = Tokenizer(models.BPE(unk_token=specials[3], byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Sequence([decoders.Metaspace(), decoders.ByteFallback()])
        # Byte-fallback tokens <0x00>..<0xFF>, as in SentencePiece vocabularies.
        alphabet = []
        specials = specials + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
        min_frequency=2,
    )
    tok.train_from_iterator(_chunks(text), trainer=trainer)
    bos, eos, pad, unk = specials[:4]
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)


def _chunks(text: str, size: int = 4096) -> list[str]:
    # The trainer counts words per chunk; fixed-size chunks keep its input independent of line lengths.
    return [text[i : i + size] for i in range(0, len(text), size)]


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (documents are joined by the caller)."""
    ids: list[int] = []
    for chunk in _chunks(text, 65536):
        ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return ids
