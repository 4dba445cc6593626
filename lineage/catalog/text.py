"""Offline training text: the interpreter's own standard library, split into deterministic mixtures.

No corpus can be downloaded here, yet the catalog's weights must carry the marks of real training, so
the text is the Python standard library that ships with the interpreter: source files, their docstrings,
the test suite and pydoc's topic pages. Families differ by *which* documents they see, as real families
differ by their data mixtures.

A mixture is a tuple of source specs, each naming a set of documents:

- ``lib:0,1,2`` -- library source files (tests excluded) whose path hashes into those of 8 buckets;
- ``pkg:email`` -- every source file under one package folder (a narrow domain for fine-tunes);
- ``tests`` -- the regression test suite;
- ``docs`` -- docstrings pulled out of the library sources, plus pydoc's topic pages;
- ``instruct`` -- prompt/answer pairs made from each documented function: name and signature in, the
  docstring out.

Documents are ordered by a seeded hash, never by the file system, so the same spec gives the same text
on every run; file lists are sorted before anything else looks at them.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

N_BUCKETS = 8
_SKIP_DIRS = frozenset({"site-packages", "__pycache__", "lib2to3", "ensurepip"})
# Test folders are a domain of their own ("tests"), kept out of "lib" buckets.
_TEST_DIRS = frozenset({"test", "tests", "idle_test"})
_MAX_FILE_CHARS = 60_000  # a few huge generated files (e.g. unicode tables) would dominate a mixture


def stdlib_root() -> Path:
    """Return the folder of the running interpreter's standard library (the text source)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@lru_cache(maxsize=1)
def _source_files() -> tuple[tuple[str, bool], ...]:
    """Sorted (relative path, is_test) for every ``.py`` file of the standard library."""
    root = stdlib_root()
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        # config-3.X-<platform>/ holds build machinery, not library text.
        if any(p in _SKIP_DIRS or p.startswith("config-") for p in parts):
            continue
        out.append((path.relative_to(root).as_posix(), any(p in _TEST_DIRS for p in parts[:-1])))
    return tuple(out)


@lru_cache(maxsize=4096)
def _read(rel: str) -> str:
    text = (stdlib_root() / rel).read_text(encoding="utf-8", errors="replace")
    return text[:_MAX_FILE_CHARS]


def _library_files() -> list[str]:
    return [rel for rel, is_test in _source_files() if not is_test]


@lru_cache(maxsize=4096)
def _docstrings(rel: str) -> list[tuple[str, str]]:
    """(signature-ish header, docstring) for the module and each documented def/class of a file."""
    try:
        tree = ast.parse(_read(rel))
    except (SyntaxError, ValueError):
        return []
    out = []
    module_doc = ast.get_docstring(tree)
    if module_doc:
        out.append((f"module {rel[:-3].replace('/', '.')}", module_doc))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if not doc:
                continue
            if isinstance(node, ast.ClassDef):
                header = f"class {node.name}"
            else:
                header = f"def {node.name}({ast.unparse(node.args)})"
            out.append((header, doc))
    return out


def _source_documents(spec: str) -> list[tuple[str, str]]:
    """(document id, text) pairs named by one source spec, in sorted file order."""
    kind, _, arg = spec.partition(":")
    if kind == "lib":
        buckets = {int(b) for b in arg.split(",")}
        if not buckets or not buckets <= set(range(N_BUCKETS)):
            raise ValueError(f"source {spec!r}: buckets must be in 0..{N_BUCKETS - 1}")
        return [(rel, _read(rel)) for rel in _library_files() if _stable_hash(rel) % N_BUCKETS in buckets]
    if kind == "pkg":
        docs = [(rel, _read(rel)) for rel, _ in _source_files() if rel.startswith(arg + "/")]
        if not docs:
            raise ValueError(f"source {spec!r}: no package folder {arg!r} in {stdlib_root()}")
        return docs
    if kind == "tests":
        return [(rel, _read(rel)) for rel, is_test in _source_files() if is_test]
    if kind == "docs":
        docs = [(f"{rel}#doc{i}", f"{head}\n{doc}\n") for rel in _library_files() for i, (head, doc) in
                enumerate(_docstrings(rel))]
        topics = stdlib_root() / "pydoc_data" / "topics.py"
        if topics.exists():
            docs.append(("pydoc_data/topics", _read("pydoc_data/topics.py")))
        return docs
    if kind == "instruct":
        return [(f"{rel}#ins{i}", format_instruction(head, doc)) for rel in _library_files()
                for i, (head, doc) in enumerate(_docstrings(rel))]
    raise ValueError(f"unknown text source {spec!r}: use lib:<buckets>, pkg:<name>, tests, docs or instruct")


def instruction_prompt(header: str) -> str:
    """The user turn of an instruction example: a question about one API."""
    return f"<|user|>\nWhat does `{header}` do?\n"


def format_instruction(header: str, docstring: str) -> str:
    """One instruction-tuning example: a question about an API and its documented answer."""
    return f"{instruction_prompt(header)}<|assistant|>\n{docstring.strip()}\n<|end|>\n"


def api_headers(n: int, *, seed: int) -> list[str]:
    """``n`` documented API headers (``def name(args)`` / ``class Name``), in a seeded fixed order."""
    docs = {f"{rel}#{i}": head for rel in _library_files() for i, (head, _) in enumerate(_docstrings(rel))}
    keys = sorted(docs, key=lambda k: (_stable_hash(f"{seed}|{k}"), k))
    return [docs[k] for k in keys[:n]]


def validate_sources(sources: Sequence[str]) -> None:
    """Raise ``ValueError`` if a source spec is malformed (checked when the recipe loads)."""
    for spec in sources:
        kind, _, arg = spec.partition(":")
        if kind not in {"lib", "pkg", "tests", "docs", "instruct"}:
            raise ValueError(f"unknown text source {spec!r}: use lib:<buckets>, pkg:<name>, tests, docs or instruct")
        if kind in {"lib", "pkg"} and not arg:
            raise ValueError(f"text source {spec!r} needs an argument after ':'")


def iter_documents(sources: Sequence[str], *, seed: int) -> Iterator[str]:
    """Yield the documents of several sources, interleaved in a seeded but fixed order."""
    docs: dict[str, str] = {}
    for spec in sources:
        for doc_id, text in _source_documents(spec):
            docs[f"{spec}|{doc_id}"] = text
    for key in sorted(docs, key=lambda k: (_stable_hash(f"{seed}|{k}"), k)):
        yield docs[key]


@lru_cache(maxsize=64)
def mixture_text(sources: tuple[str, ...], *, seed: int, max_chars: int) -> str:
    """Concatenate a mixture's documents, in seeded order, up to ``max_chars`` characters.

    Args:
        sources: source specs (see the module docstring).
        seed: orders the documents; two mixtures of the same sources with different seeds see
            different documents first, hence different text once truncated.
        max_chars: cap on the text length (training never needs the whole library).

    Returns:
        The text, documents separated by blank lines.

    Example:
        >>> text = mixture_text(("pkg:json",), seed=0, max_chars=10_000)
    """
    parts, total = [], 0
    for doc in iter_documents(sources, seed=seed):
        parts.append(doc)
        total += len(doc) + 2
        if total >= max_chars:
            break
    return "\n\n".join(parts)[:max_chars]
