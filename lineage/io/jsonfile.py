"""Reading a JSON file that must hold an object, or raising the caller's one-line error: written once.

Configs, index files, tokenizers, adapter settings, pack and store descriptions, published feature files:
lineage reads a dozen kinds of small JSON documents, and each one that is unreadable, not JSON, or not an
object must fail the same way, as one line naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lineage.errors import FileError, LineageError


def read_json_object(path: str | Path, error: type[LineageError], unreadable: str, fix: str = "") -> dict[str, Any]:
    """The JSON object in `path`.

    Args:
        path: the file.
        error: the `LineageError` to raise (a `FileError` gets the path as its own argument).
        unreadable: what the message says when the file cannot be read or is not JSON (`config is not valid
            JSON`); the reason follows in parentheses.
        fix: what to do about it (`re-download it`), appended to every message.

    Returns:
        The parsed object.

    Raises:
        error: `<path>: <unreadable> (<reason>); <fix>`, or `<path>: is a JSON list, not an object; <fix>`.

    Example:
        >>> read_json_object("model/config.json", CheckpointError, "config is not valid JSON")  # doctest: +SKIP
        {'model_type': 'llama'}
    """
    path = Path(path)
    tail = f"; {fix}" if fix else ""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise _error(error, path, f"{unreadable} ({json_problem(exc)}){tail}") from None
    if not isinstance(doc, dict):
        raise _error(error, path, f"is a JSON {type(doc).__name__}, not an object{tail}")
    return doc


def json_problem(exc: BaseException) -> str:
    """What a failed `json.loads` (or the read before it) says, in a few words on one line.

    Besides malformed JSON: nesting too deep for the parser (`RecursionError`), an integer of thousands
    of digits (`ValueError`, Python's limit on integer strings), text that is not UTF-8.
    """
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at char {exc.pos}"
    if isinstance(exc, RecursionError):
        return "nested too deeply to be a real document"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return "an integer of thousands of digits"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def read_folder_document(
    folder: str | Path, name: str, error: type[LineageError], *, kind: str, form: str, version: int, build: str
) -> dict[str, Any]:
    """The JSON document that says what a folder is (a pack's `pack.json`, a store's `store.json`), checked.

    Args:
        folder: the folder.
        name: the document's file name in it.
        error: the `LineageError` to raise.
        kind: what the folder is, in words (`reference pack`).
        form: the `format` the document must name; version: the `format_version` it must have.
        build: the command that makes one (`lineage refs build`), for the messages.

    Raises:
        error: no such document, unreadable, of another format, or of another format version.
    """
    folder = Path(folder)
    file = folder / name
    if not file.is_file():
        raise _error(error, folder, f"not a {kind} (no {name}); build one with `{build}`")
    doc = read_json_object(file, error, "unreadable")
    if doc.get("format") != form:
        raise _error(error, file, f"not a lineage {kind} (format {doc.get('format')!r})")
    if doc.get("format_version") != version:
        raise _error(
            error, file, f"{kind} format version {doc.get('format_version')} is not {version}: rebuild it with "
            f"this lineage (`{build}`)"
        )  # fmt: skip
    return doc


def _error(error: type[LineageError], path: Path, problem: str) -> LineageError:
    return error(path, problem) if issubclass(error, FileError) else error(f"{path}: {problem}")
