"""The name a model goes by, from its path alone: one rule for every command and every output.

A folder is named after itself (`abspath`, not `resolve`: `.` names the folder, a symlink keeps the name it
was given), a weights file after its stem, a GGUF file after its stem without `.gguf` and without the
`-00001-of-00003` tail of a split set, `model.safetensors` (or its index) after its folder, a fingerprint
file after the model it stands for, `hf://org/name@rev` after `name`. The readers name what they open
with these functions, so a model keeps its name whether it was fingerprinted, found in the cache or failed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lineage.io.constants import FINGERPRINT_SUFFIX, GGUF_SUFFIX, INDEX_FILE, SAFETENSORS_SUFFIX, SINGLE_FILE

_SPLIT_TAIL = re.compile(r"-\d{5}-of-\d{5}$")
#: Published TensorGuard feature files (`<name>_features.json`).
FEATURES_SUFFIX = "_features.json"


def model_name(path: str | Path) -> str:
    """The model's name for `path` (see the module docstring); never opens the file.

    Example:
        >>> model_name("models/SmolLM2-135M-Instruct.Q4_1.gguf"), model_name("q/llama-00001-of-00002.gguf")
        ('SmolLM2-135M-Instruct.Q4_1', 'llama')
    """
    text = str(path)
    if text.startswith("hf:/"):  # hf://org/name[@revision]
        return text.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    path = Path(os.path.abspath(path))
    name = path.name
    for suffix in (FINGERPRINT_SUFFIX, FEATURES_SUFFIX):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    if name in (SINGLE_FILE, INDEX_FILE):
        return path.parent.name
    if name.endswith(GGUF_SUFFIX):
        return _SPLIT_TAIL.sub("", name[: -len(GGUF_SUFFIX)]) or name
    if name.endswith(SAFETENSORS_SUFFIX):
        return name[: -len(SAFETENSORS_SUFFIX)] or name
    return name


def unique_names(names: list[str], paths: list[str | Path]) -> list[str]:
    """`names`, with those that two or more models share told apart by their paths' parent folders.

    The shortest tail of parent folders that separates the models is put in front (`a/model`, `b/model`);
    the same path given twice gets `#2`, `#3`.

    Example:
        >>> unique_names(["model", "model", "x"], ["org1/model", "org2/model", "x"])
        ['org1/model', 'org2/model', 'x']
    """
    out = list(names)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    for name, members in groups.items():
        if len(members) > 1:
            for i, label in zip(members, _told_apart(name, [paths[i] for i in members])):
                out[i] = label
    return _numbered(out)


def _told_apart(name: str, paths: list[str | Path]) -> list[str]:
    """Labels for models of one name: the fewest parent folders that give the most distinct labels."""
    parents = [Path(os.path.abspath(p)).parent.parts for p in paths]
    if len(set(parents)) == 1:
        return [name] * len(paths)  # one path given twice: numbered by `_numbered`
    best: list[str] = []
    for k in range(1, max(len(p) for p in parents) + 1):
        labels = ["/".join([*p[-k:], name]).lstrip("/") for p in parents]
        if len(set(labels)) > len(set(best)):
            best = labels
        if len(set(labels)) == len(labels):
            break
    return best


def _numbered(labels: list[str]) -> list[str]:
    """Labels still shared (or equal to another model's own name) get `#2`, `#3`, in order."""
    taken: set[str] = set()
    out = []
    for label in labels:
        candidate, n = label, 1
        while candidate in taken:
            n += 1
            candidate = f"{label}#{n}"
        taken.add(candidate)
        out.append(candidate)
    return out
