"""Vocabulary edits on a saved model folder: permute the token ids, or trim a share of the tokens.

Both are what a thief can do to a checkpoint without changing what it computes on text. Permuting moves
every token to another id, in the tokenizer (`tokenizer.json`: the BPE/WordPiece `model.vocab` ids or a
Unigram's piece order, the added tokens, the post-processor's special ids) and in the embedding and head
rows alike, so a text encodes to the permuted ids and the logits over the vocabulary are the same up to
that permutation. Trimming drops a share of the ordinary tokens (never special or added ones, single
characters or bytes, so every text still encodes), their rows and the BPE merges that make or use them,
and renumbers the rest in order; the model is unchanged on the tokens it keeps.

They work on the folder as saved (safetensors + `config.json` + `tokenizer.json`, the layout a hub
checkpoint has), tensor by tensor, without transformers: the ids in `config.json`,
`generation_config.json` and `tokenizer_config.json` are rewritten to match, and every other file is
copied as it is.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from lineage.errors import CatalogError
from lineage.io.jsonfile import read_json_object

TOKENIZER = "tokenizer.json"
_ID_FILES = ("config.json", "generation_config.json")
_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def permute_vocabulary(src: Path, dst: Path, seed: int) -> None:
    """Write to `dst` the model of `src` with its token ids permuted (seeded), tokenizer permuted alike.

    Args:
        src: a model folder (safetensors, `config.json`, `tokenizer.json`).
        dst: the folder to write (must not exist, or be empty).
        seed: the permutation seed.

    Raises:
        CatalogError: `src` lacks a tokenizer or a recognisable embedding, or `dst` is not empty.
    """
    src, dst = Path(src), Path(dst)
    rows = _vocab_rows(src)
    perm = np.random.default_rng(seed).permutation(rows)  # old id -> new id
    _write(src, dst, {i: int(perm[i]) for i in range(rows)}, rows)


def trim_vocabulary(src: Path, dst: Path, keep: float, seed: int) -> None:
    """Write to `dst` the model of `src` with a share `1 - keep` of its ordinary tokens dropped (seeded).

    Args:
        src: a model folder (safetensors, `config.json`, `tokenizer.json`).
        dst: the folder to write (must not exist, or be empty).
        keep: the share of ordinary tokens kept, in (0, 1].
        seed: which tokens go.

    Raises:
        ValueError: `keep` outside (0, 1].
        CatalogError: as for `permute_vocabulary`.
    """
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    src, dst = Path(src), Path(dst)
    rows = _vocab_rows(src)
    doc = _read_json(src / TOKENIZER)
    droppable = sorted(_droppable(doc))
    rng = np.random.default_rng(seed)
    drop = set(rng.choice(droppable, size=round(len(droppable) * (1 - keep)), replace=False).tolist())
    kept = [i for i in range(rows) if i not in drop]
    _write(src, dst, {old: new for new, old in enumerate(kept)}, len(kept))


def _read_json(path: Path) -> dict:
    return read_json_object(path, CatalogError, "unreadable JSON")


def _vocab_rows(src: Path) -> int:
    """Rows of the embedding, after checking the folder has a tokenizer that fits in them."""
    from lineage.arch import resolve_model
    from lineage.io import open_checkpoint

    if not (src / TOKENIZER).is_file():
        raise CatalogError(f"{src}: no {TOKENIZER}; a vocabulary edit needs the tokenizer")
    with open_checkpoint(src) as reader:
        model = resolve_model(reader)
        rows = int(reader.info(model.embed).shape[0])
    if max(_token_ids(_read_json(src / TOKENIZER)).values(), default=-1) >= rows:
        raise CatalogError(f"{src / TOKENIZER}: token ids beyond the {rows} embedding rows")
    return rows


def _token_ids(doc: dict) -> dict[str, int]:
    """Every token of a tokenizer.json document, with its id (model vocabulary, then added tokens)."""
    model = doc.get("model") or {}
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        out = {str(t): int(i) for t, i in vocab.items()}
    elif isinstance(vocab, list):
        out = {str(entry[0]): i for i, entry in enumerate(vocab)}
    else:
        raise CatalogError(f"{TOKENIZER} has no model.vocab")
    for added in doc.get("added_tokens") or []:
        out.setdefault(str(added["content"]), int(added["id"]))
    return out


def _droppable(doc: dict) -> set[int]:
    """Ids of ordinary tokens a trim may drop: not added or special, not a character, byte or unknown."""
    model = doc.get("model") or {}
    keep = {int(a["id"]) for a in doc.get("added_tokens") or []}
    unk = model.get("unk_token")
    out = set()
    for token, i in _token_ids(doc).items():
        bare = token.removeprefix(model.get("continuing_subword_prefix") or "\x01")
        if i in keep or token == unk or len(bare) <= 1 or _BYTE_FALLBACK.fullmatch(token):
            continue
        out.add(i)
    if isinstance(model.get("unk_id"), int):
        out.discard(model["unk_id"])
    return out


def _remap_tokenizer(doc: dict, new_id: dict[int, int]) -> dict:
    """tokenizer.json with ids mapped by `new_id` (ids missing from it are dropped, with their merges)."""
    model = doc["model"]
    vocab = model["vocab"]
    if isinstance(vocab, dict):
        model["vocab"] = dict(sorted(((t, new_id[i]) for t, i in vocab.items() if i in new_id), key=lambda p: p[1]))
        if "merges" in model:
            present = set(model["vocab"])

            def valid(merge: str | list) -> bool:
                a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
                return a in present and b in present and a + b in present

            # A merge is kept only when both parts and its result survive (the library checks it).
            model["merges"] = [m for m in model["merges"] if valid(m)]
    else:  # Unigram: the list order is the id
        pieces = {new_id[i]: entry for i, entry in enumerate(vocab) if i in new_id}
        model["vocab"] = [pieces[i] for i in sorted(pieces)]
        if isinstance(model.get("unk_id"), int):
            model["unk_id"] = new_id[model["unk_id"]]
    doc["added_tokens"] = sorted(
        ({**a, "id": new_id[a["id"]]} for a in doc.get("added_tokens") or [] if a["id"] in new_id),
        key=lambda a: a["id"],
    )
    _remap_post_processor(doc.get("post_processor"), new_id)
    return doc


def _remap_post_processor(node: object, new_id: dict[int, int]) -> None:
    """Special-token ids inside a post-processor (TemplateProcessing, Bert/Roberta pairs), in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                node[key] = [new_id[i] for i in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                node[key] = [value[0], new_id[value[1]]]
            else:
                _remap_post_processor(value, new_id)
    elif isinstance(node, list):
        for item in node:
            _remap_post_processor(item, new_id)


def _remap_config(doc: dict, new_id: dict[int, int], rows: int) -> dict:
    """`*_token_id(s)` entries mapped (an id not kept becomes None) and `vocab_size` set, nested configs too."""
    for key, value in list(doc.items()):
        if key.endswith("token_id") and isinstance(value, int) and not isinstance(value, bool):
            doc[key] = new_id.get(value)
        elif key.endswith(("token_id", "token_ids")) and isinstance(value, list):
            doc[key] = [new_id.get(v) if isinstance(v, int) else v for v in value]
        elif key == "vocab_size" and isinstance(value, int):
            doc[key] = rows
        elif isinstance(value, dict) and key == "text_config":
            _remap_config(value, new_id, rows)
    return doc


def _remap_tokenizer_config(doc: dict, new_id: dict[int, int]) -> dict:
    decoder = doc.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        doc["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
    return doc


def _write(src: Path, dst: Path, new_id: dict[int, int], new_rows: int) -> None:
    """Copy `src` to `dst` with embedding/head rows and every token id moved by `new_id` (old -> new)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lineage.arch import resolve_model
    from lineage.io import open_checkpoint

    if dst.exists() and any(dst.iterdir()):
        raise CatalogError(f"{dst}: the output folder is not empty")
    with open_checkpoint(src) as reader:
        model = resolve_model(reader)
        files = list(reader.files)
        rows = int(reader.info(model.embed).shape[0])
    # Row `new` of an edited matrix is row `old` of the original.
    order = np.empty(new_rows, dtype=np.int64)
    for old, new in new_id.items():
        order[new] = old
    vocab_tensors = {model.embed, *([model.head] if model.head else [])}
    if model.head and model.head.endswith(".weight"):
        vocab_tensors.add(model.head[: -len(".weight")] + ".bias")  # a head bias is per token too
    dst.mkdir(parents=True, exist_ok=True)
    for path in files:
        tensors, meta = {}, None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            for name in f.keys():
                t = f.get_tensor(name)
                if name in vocab_tensors and t.dim() >= 1 and t.shape[0] == rows:
                    t = t[torch.from_numpy(order)].contiguous()
                tensors[name] = t
        save_file(tensors, str(dst / path.relative_to(src)), metadata=meta)
    done = {p.relative_to(src).as_posix() for p in files}
    for item in sorted(src.rglob("*")):
        rel = item.relative_to(src).as_posix()
        if item.is_dir() or rel in done:
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel == TOKENIZER:
            doc = _remap_tokenizer(_read_json(item), new_id)
        elif rel in _ID_FILES:
            doc = _remap_config(_read_json(item), new_id, new_rows)
        elif rel == "tokenizer_config.json":
            doc = _remap_tokenizer_config(_read_json(item), new_id)
        else:
            shutil.copy2(item, out)
            continue
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
