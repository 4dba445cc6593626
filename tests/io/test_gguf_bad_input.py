"""Broken GGUF files are refused in one `CheckpointError` line naming the file; a fuzzed corpus never crashes.

The targeted cases are built byte by byte (`raw_gguf`), independently of gguf-py's writer, so each breaks
exactly one fact; the fuzz corpus corrupts a valid file written by `gguf.GGUFWriter`.
"""

from __future__ import annotations

import random
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gguf.constants import GGMLQuantizationType as Q
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.errors import CheckpointError, NonFiniteWeightsError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.gguf_header import read_gguf_header
from tests.io.test_gguf_support import hf_tensors, write_gguf

U32, F32, STRING, ARRAY, U64 = 4, 6, 8, 9, 10


def _str(s: bytes | str) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, kind: int, value: object) -> bytes:
    if kind == STRING:
        payload = _str(value)  # type: ignore[arg-type]
    elif kind == U32:
        payload = struct.pack("<I", value)
    elif kind == F32:
        payload = struct.pack("<f", value)
    else:
        payload = value  # type: ignore[assignment]
    return _str(key) + struct.pack("<I", kind) + payload


GOOD_KV = [
    kv("general.architecture", STRING, "llama"),
    kv("llama.block_count", U32, 0),
    kv("llama.embedding_length", U32, 32),
    kv("llama.attention.head_count", U32, 2),
]


def tinfo(name: str, dims: tuple[int, ...], kind: int = 0, offset: int = 0) -> bytes:
    return (
        _str(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", kind, offset)
    )


def raw_gguf(
    *,
    magic: bytes = b"GGUF",
    version: bytes = struct.pack("<I", 3),
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes = b"\0" * (32 * 4 * 4 + 32 * 4),
    n_tensors: int | None = None,
    n_kv: int | None = None,
) -> bytes:
    """A GGUF file; by default valid: a 4-token F32 embedding of width 32 and its final norm."""
    kvs = GOOD_KV if kvs is None else kvs
    if tensors is None:
        tensors = [tinfo("token_embd.weight", (32, 4)), tinfo("output_norm.weight", (32,), 0, 512)]
    head = magic + version + struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors,
                                        len(kvs) if n_kv is None else n_kv)  # fmt: skip
    head += b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + data


def check(exc: BaseException, file: Path, phrase: str, cls: type = CheckpointError) -> None:
    message = str(exc)
    assert type(exc) is cls, f"{type(exc).__name__}: {message}"
    assert str(file) in message and phrase in message, message
    assert "\n" not in message


def test_the_raw_builder_makes_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.gguf"
    path.write_bytes(raw_gguf())
    with open_checkpoint(path) as ckpt:
        assert ckpt.names() == ["model.embed_tokens.weight", "model.norm.weight"]
        assert ckpt.tensor("model.embed_tokens.weight").shape == (4, 32)


def _big(n: int) -> bytes:
    return struct.pack("<Q", n)


CASES = {
    "wrong magic": (dict(magic=b"GGML"), "wrong magic"),
    "version 1": (dict(version=struct.pack("<I", 1)), "version 1 is not supported"),
    "version 4": (dict(version=struct.pack("<I", 4)), "version 4 is not supported"),
    "big-endian": (dict(version=struct.pack(">I", 3)), "big-endian"),
    "absurd tensor count": (dict(n_tensors=1 << 60), "more than the file can hold"),
    "absurd key count": (dict(n_kv=1 << 40), "more than the file can hold"),
    "string longer than the file": (
        dict(kvs=[_big(1 << 50) + b"general.architecture"] + GOOD_KV[1:]),
        "longer than the rest of the file",
    ),
    "array longer than the file": (
        dict(kvs=[*GOOD_KV, kv("tokenizer.ggml.tokens", ARRAY, struct.pack("<I", STRING) + _big(1 << 40))]),
        "claims 1099511627776 elements",
    ),
    "unknown value type": (dict(kvs=[*GOOD_KV, kv("x", 13, b"")]), "unknown value type 13"),
    "duplicate key": (dict(kvs=[*GOOD_KV, GOOD_KV[1]]), "appears twice"),
    "bad alignment": (dict(kvs=[*GOOD_KV, kv("general.alignment", U32, 24)]), "not a power of two"),
    "alignment not uint32": (dict(kvs=[*GOOD_KV, kv("general.alignment", STRING, "32")]), "not a uint32"),
    "offset beyond the file": (
        dict(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("output_norm.weight", (32,), 0, 1 << 40)]),
        "ends beyond the end of the file",
    ),
    "unknown quant type": (dict(tensors=[tinfo("token_embd.weight", (32, 4), 99)]), "unknown GGML type id 99"),
    "shape not a multiple of the block": (
        dict(tensors=[tinfo("token_embd.weight", (33, 4), int(Q.Q8_0))]),
        "not a multiple of its block size 32",
    ),
    "overlapping tensors": (
        dict(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("output_norm.weight", (32,), 0, 256)]),
        "overlap",
    ),
    "unaligned offset": (
        dict(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("output_norm.weight", (32,), 0, 516)]),
        "not a multiple of the alignment 32",
    ),
    "duplicate tensor": (
        dict(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("token_embd.weight", (32,), 0, 512)]),
        "appears twice",
    ),
    "five dimensions": (dict(tensors=[tinfo("token_embd.weight", (32, 1, 1, 1, 4))]), "5 dimensions"),
    "zero dimension": (dict(tensors=[tinfo("token_embd.weight", (32, 0))]), "zero dimension"),
    "no tensors": (dict(tensors=[], data=b""), "holds no tensors"),
    "unknown architecture": (
        dict(kvs=[kv("general.architecture", STRING, "not-an-arch"), *GOOD_KV[1:]]),
        "unknown to the installed gguf",
    ),
    "absurd block index": (
        dict(tensors=[tinfo("token_embd.weight", (32, 4)), tinfo("blk.99999999999.attn_norm.weight", (32,), 0, 512)]),
        "reach block 99999999999",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_header_is_one_line(tmp_path: Path, case: str) -> None:
    kwargs, phrase = CASES[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(raw_gguf(**kwargs))
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(path)
    check(exc_info.value, path, phrase)


@pytest.mark.parametrize("cut", [3, 20, 40, 200])
def test_truncated_file(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.gguf"
    good = raw_gguf()
    path.write_bytes(good[:cut] if cut < 100 else good[:-cut])
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(path)
    check(exc_info.value, path, "too short" if cut < 24 else "truncated")


def test_heads_that_do_not_fit_q_are_refused(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama"))
    data = path.read_bytes()
    key = b"llama.attention.head_count"
    at = data.index(key) + len(key) + 4  # past the key and its type: the uint32 value
    path.write_bytes(data[:at] + struct.pack("<I", 3) + data[at + 4 :])
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(path)
    check(exc_info.value, path, "cannot split into rotary pairs")


def test_a_layout_error_names_the_gguf_file(tmp_path: Path) -> None:
    # Not its folder: a folder of quantisations holds several GGUF files, and the message must say which.
    tensors = {k: v for k, v in hf_tensors("llama").items() if k != "model.layers.1.self_attn.k_proj.weight"}
    path = write_gguf(tmp_path / "m.gguf", "llama", tensors)
    with pytest.raises(CheckpointError) as exc_info:
        fingerprint_model(path, FingerprintOptions(device="cpu"))
    check(exc_info.value, path, "layer 1 lacks")
    assert str(exc_info.value).startswith(f"{path}: ")


def test_nan_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.gguf"
    path.write_bytes(raw_gguf(data=struct.pack("<f", float("nan")) * (4 * 32 + 32)))
    with open_checkpoint(path) as ckpt, pytest.raises(NonFiniteWeightsError) as exc_info:
        ckpt.tensor("model.norm.weight")
    check(exc_info.value, path, "NaN/Inf", NonFiniteWeightsError)


def test_split_sets(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama"), split_max_tensors=8)
    first, second = tmp_path / "m-00001-of-00003.gguf", tmp_path / "m-00002-of-00003.gguf"
    for given in (first, second, tmp_path):
        with open_checkpoint(given) as ckpt:
            assert len(ckpt.files) == 3 and len(ckpt) == 20
            assert ckpt.name == ("m" if given != tmp_path else tmp_path.name)
            assert ckpt.tensor("model.layers.1.mlp.down_proj.weight").shape == (64, 96)
    second.unlink()
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(first)
    check(exc_info.value, first, "lacks m-00002-of-00003.gguf")


def test_a_bulk_run_records_a_bad_gguf_and_goes_on(tmp_path: Path) -> None:
    bad = tmp_path / "a.gguf"
    bad.write_bytes(raw_gguf(magic=b"XXXX"))
    good = write_gguf(tmp_path / "good" / "tiny.gguf", "llama", hf_tensors("llama"))
    result = CliRunner().invoke(
        app, ["fingerprint", str(bad), str(good.parent), "--out", str(tmp_path / "fps"), "--device", "cpu",
              "--anchors", "16", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "wrong magic" in result.output and "Traceback" not in result.output
    assert list((tmp_path / "fps").glob("*.fingerprint.safetensors"))  # the good one was still fingerprinted


# -- fuzzing -----------------------------------------------------------------------------------------------


@contextmanager
def _no_hang(seconds: float) -> Iterator[None]:
    def alarm(*_: object) -> None:
        raise TimeoutError("the reader hung on a corrupted file")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _variants(good: bytes, header_end: int, rng: random.Random) -> Iterator[bytes]:
    for _ in range(60):  # truncations, most inside the header
        yield good[: rng.randrange(header_end if rng.random() < 0.7 else len(good))]
    for _ in range(70):  # a few random bytes in the header
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
        yield bytes(data)
    for _ in range(60):  # an 8-byte field overwritten with an edge value (lengths, counts, dims, offsets)
        data = bytearray(good)
        at = rng.randrange(header_end - 8)
        value = rng.choice([0, 1, 31, 2**31, 2**32 - 1, 2**63, 2**64 - 1, rng.randrange(2**64)])
        data[at : at + 8] = struct.pack("<Q", value)
        yield bytes(data)
    for _ in range(30):  # bytes anywhere, data included
        data = bytearray(good)
        for _ in range(rng.randint(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        yield bytes(data)
    for _ in range(20):  # a chunk of the header deleted or duplicated
        a = rng.randrange(header_end)
        b = min(len(good), a + rng.randint(1, 64))
        yield good[:a] + good[b:] if rng.random() < 0.5 else good[:b] + good[a:b] + good[b:]


def test_fuzzed_headers_never_crash(tmp_path: Path) -> None:
    good_path = write_gguf(tmp_path / "good.gguf", "llama", hf_tensors("llama"), qtype=Q.Q8_0)
    good = good_path.read_bytes()
    header_end = read_gguf_header(good_path).data_offset
    path = tmp_path / "fuzz.gguf"
    outcomes = {"refused": 0, "read": 0}
    variants = list(_variants(good, header_end, random.Random(0)))
    assert len(variants) >= 200
    for i, data in enumerate(variants):
        path.write_bytes(data)
        with _no_hang(5.0):
            try:
                with open_checkpoint(path) as ckpt:
                    for name in ckpt.names():
                        ckpt.tensor(name)
                    ckpt.rows(ckpt.names()[0], [0, -1])
                    _ = ckpt.vocabulary, ckpt.config, ckpt.header_sha256()
                outcomes["read"] += 1
            except CheckpointError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc), f"variant {i}: {exc}"
                outcomes["refused"] += 1
    assert outcomes["refused"] > 100  # most corruptions are caught, not read as a model


@pytest.mark.parametrize(
    ("tokens", "types", "phrase"),
    [
        (3, 3, "holds 3 tokens for 48 embedding rows"),
        (None, 5, "token_type is not one integer for each of the 48 tokens"),
    ],
    ids=["fewer-tokens-than-rows", "types-of-another-length"],
)
def test_an_embedded_vocabulary_that_contradicts_the_embedding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tokens: int | None, types: int, phrase: str
) -> None:
    import tests.io.test_gguf_support as support

    monkeypatch.setattr(support, "TOKENS", support.TOKENS[:tokens])
    monkeypatch.setattr(support, "TOKEN_TYPES", support.TOKEN_TYPES[:types])
    path = write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama"))
    with pytest.raises(CheckpointError) as exc_info:
        with open_checkpoint(path) as ckpt:
            ckpt.vocabulary  # noqa: B018 - reading it is the point
    check(exc_info.value, path, phrase)
