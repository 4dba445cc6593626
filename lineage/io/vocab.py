"""A model's vocabulary: which token string each embedding row stands for.

Anchors are chosen by token *string*, not by id, so that two models are compared on the tokens they share
whatever ids their tokenizers give them: a vocabulary permuted along with its embedding and head (the model
computes the same function on text) keeps its fingerprint, and an extended or trimmed vocabulary keeps the
tokens it did not touch. Strings are compared in a canonical form, the text a token decodes to: byte-level
BPE (GPT-2, Llama 3, Qwen) writes bytes as printable stand-ins (`Ġ` for a space) and SentencePiece writes
a space as `▁`; both become a plain space, so one tokenizer saved by two tools (a `tokenizer.json`, a GGUF
vocabulary) gives the same strings.

Special, added, control and unused tokens are marked: their rows are conventions or untrained, not
something a model learned from its data, and anchors skip them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lineage.errors import CheckpointError
from lineage.io.index import inside_folder
from lineage.io.jsonfile import read_json_object

TOKENIZER_FILE = "tokenizer.json"
_MAX_TOKENIZER_BYTES = 256 << 20


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id, and which ids are not ordinary learned tokens.

    Attributes:
        tokens: canonical token string of each id (`""` for an id the tokenizer does not define).
        special: ids of special, added, control, unused or undefined tokens (never anchors).
        source: where the vocabulary was read (`tokenizer.json`, `gguf`).
    """

    tokens: tuple[str, ...]
    special: frozenset[int] = field(default_factory=frozenset)
    source: str = TOKENIZER_FILE

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a vocabulary needs at least one token")
        if any(not 0 <= i < len(self.tokens) for i in self.special):
            raise ValueError("special ids must be token ids")

    def __len__(self) -> int:
        return len(self.tokens)

    def ordinary_ids(self, limit: int | None = None) -> list[int]:
        """Ids below `limit` (all when None) of ordinary tokens whose string is unique, ascending."""
        seen: dict[str, int] = {}
        dupes: set[str] = set()
        stop = len(self.tokens) if limit is None else min(limit, len(self.tokens))
        for i in range(stop):
            s = self.tokens[i]
            if i in self.special or not s:
                continue
            if s in seen:
                dupes.add(s)
            seen.setdefault(s, i)
        return sorted(i for s, i in seen.items() if s not in dupes)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in of each byte, inverted (the mapping every byte-level BPE uses)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, n = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def canonical_token(token: str, byte_level: bool) -> str:
    """The text a token stands for: byte-level stand-ins decoded, SentencePiece's `▁` made a space.

    A byte-level token that is not valid UTF-8 on its own (part of a multi-byte character) keeps its raw
    form, marked with a leading `\\x00` so it can never equal a decoded string.
    """
    if byte_level:
        table = _byte_decoder()
        if all(c in table for c in token):
            raw = bytes(table[c] for c in token)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return "\x00" + token
        return token
    return token.replace("\u2581", " ")


def _is_byte_level(doc: dict) -> bool:
    def walk(node: object) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel":
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(doc.get("pre_tokenizer")) or walk(doc.get("decoder"))


def read_tokenizer_json(path: str | Path) -> Vocabulary:
    """Read the vocabulary of a Hugging Face `tokenizer.json` (BPE, WordPiece, WordLevel or Unigram).

    Args:
        path: the file.

    Returns:
        The vocabulary; added tokens marked special.

    Raises:
        CheckpointError: unreadable, not JSON, or no vocabulary in it.
    """
    path = Path(path)
    try:
        too_large = path.stat().st_size > _MAX_TOKENIZER_BYTES
    except OSError as exc:
        raise CheckpointError(path, f"unreadable tokenizer.json ({exc}); fix or remove it") from None
    if too_large:
        raise CheckpointError(path, "tokenizer.json is larger than 256 MB: not a tokenizer file")
    doc = read_json_object(path, CheckpointError, "unreadable tokenizer.json", "fix or remove it")
    model = doc.get("model")
    if not isinstance(model, dict) or "vocab" not in model:
        raise CheckpointError(path, "tokenizer.json has no model.vocab; fix or remove it")
    by_id: dict[int, str] = {}
    vocab = model["vocab"]
    if isinstance(vocab, dict):  # BPE, WordPiece, WordLevel: token -> id
        for token, i in vocab.items():
            if isinstance(i, int) and not isinstance(i, bool) and i >= 0:
                if i in by_id:
                    raise CheckpointError(path, f"tokenizer.json gives id {i} to two tokens; fix or remove it")
                by_id[i] = token
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...] by id
        for i, entry in enumerate(vocab):
            if isinstance(entry, list) and entry:
                by_id[i] = _token_string(path, entry[0])
    else:
        raise CheckpointError(path, f"tokenizer.json's model.vocab is a JSON {type(vocab).__name__}; fix or remove it")
    added_tokens = doc.get("added_tokens") or []
    if not isinstance(added_tokens, list):
        raise CheckpointError(path, "tokenizer.json's added_tokens is not a list; fix or remove it")
    special: set[int] = set()
    for added in added_tokens:
        if isinstance(added, dict) and isinstance(added.get("id"), int) and added["id"] >= 0:
            by_id.setdefault(added["id"], _token_string(path, added.get("content", "")))
            special.add(added["id"])
    if not by_id:
        raise CheckpointError(path, "tokenizer.json holds an empty vocabulary; fix or remove it")
    if max(by_id) >= 16 << 20:
        raise CheckpointError(path, f"tokenizer.json names token id {max(by_id)}: not a real vocabulary")
    byte_level = _is_byte_level(doc)
    size = max(by_id) + 1
    tokens = tuple(canonical_token(by_id[i], byte_level) if i in by_id else "" for i in range(size))
    special |= {i for i in range(size) if i not in by_id}
    return Vocabulary(tokens, frozenset(special), TOKENIZER_FILE)


def _token_string(path: Path, token: object) -> str:
    if not isinstance(token, str):
        raise CheckpointError(
            path, f"tokenizer.json holds a token that is not a string ({token!r:.40}); fix or remove it"
        )
    return token


def find_vocabulary(folder: str | Path) -> Vocabulary | None:
    """The vocabulary of the `tokenizer.json` in a model folder, None when there is none."""
    path = Path(folder) / TOKENIZER_FILE
    return read_tokenizer_json(inside_folder(Path(folder), path)) if path.is_file() else None
