"""`hf://org/name[@revision]` inputs against a local stand-in for the hub (no hub is reachable in tests).

The server, started on 127.0.0.1 by the fixture and pointed to with `HF_ENDPOINT`, answers the two calls
huggingface_hub makes: model info (`/api/models/{repo}[/revision/{rev}]`: commit and file list) and file
resolve (`/{repo}/resolve/{rev}/{file}`, HEAD and GET, with the `X-Repo-Commit`, `ETag` and
`Content-Length` headers its `get_hf_file_metadata` reads). It logs every request, so the tests can tell
which files were fetched. It stops at the end of each test.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from lineage.errors import HubError
from lineage.io.hub import keep_downloads, parse_hub_path, resolve
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

pytest.importorskip("huggingface_hub")

REPO = "acme/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Hub:
    """What the server serves: one repository at one commit, reachable as `main` or by its hash."""

    def __init__(self, folder: Path) -> None:
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.log: list[tuple[str, str]] = []


def _handler(hub: _Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

        def _route(self) -> tuple[int, dict, bytes]:
            path = unquote(urlsplit(self.path).path)
            hub.log.append((self.command, path))
            info_prefix = f"/api/models/{REPO}"
            if path in (info_prefix, f"{info_prefix}/revision/main", f"{info_prefix}/revision/{COMMIT}"):
                body = json.dumps(
                    {"id": REPO, "modelId": REPO, "sha": COMMIT, "siblings": [{"rfilename": n} for n in hub.files]}
                ).encode()
                return 200, {"Content-Type": "application/json"}, body
            for rev in ("main", COMMIT):
                prefix = f"/{REPO}/resolve/{rev}/"
                if path.startswith(prefix) and path[len(prefix) :] in hub.files:
                    data = hub.files[path[len(prefix) :]]
                    etag = hashlib.sha256(data).hexdigest()
                    return 200, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Length": str(len(data))}, data
            if path.startswith("/api/models/"):
                return 404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}, b"{}"
            return 404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}, b"{}"

        def _answer(self, with_body: bool) -> None:
            status, headers, body = self._route()
            self.send_response(status)
            headers.setdefault("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

    return Handler


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """The repository's content: a tiny Llama, a model card, and files lineage must not fetch."""
    folder = write_checkpoint(tmp_path / "repo", tiny_llama_tensors(3))
    (folder / "README.md").write_text("# tiny llama\n")
    (folder / "pytorch_model.bin").write_bytes(b"pickled weights are never fetched")
    (folder / "optimizer.pt").write_bytes(b"neither are optimizer states")
    return folder


@pytest.fixture
def hub(model_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_Hub]:
    state = _Hub(model_folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # never the user's token or cache
    monkeypatch.delenv("LINEAGE_HUB_KEEP", raising=False)
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fetched(hub: _Hub) -> set[str]:
    return {p.rsplit("/", 1)[-1] for m, p in hub.log if m == "GET" and "/resolve/" in p}


def test_hub_paths_parse() -> None:
    assert parse_hub_path("hf://org/name").repo_id == "org/name"
    assert parse_hub_path("hf://org/name@v1.0").revision == "v1.0"
    assert parse_hub_path(Path("hf://org/name@main")).revision == "main"  # Path collapses '//'
    for bad in ("hf://justname", "hf://org/na me", "hf://../x", "hf://org/name@"):
        with pytest.raises(HubError):
            parse_hub_path(bad)


def test_resolve_gives_the_commit_and_only_the_needed_files(hub: _Hub) -> None:
    model = resolve(f"hf://{REPO}@main")
    assert model.commit == COMMIT and model.revision == "main"
    assert model.files == ("README.md", "config.json", "model.safetensors")


def test_fingerprint_of_a_hub_model_equals_the_local_one(hub: _Hub, model_folder: Path, tmp_path: Path) -> None:
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.obtain import FINGERPRINTED, obtain_fingerprint

    fp, how = obtain_fingerprint(f"hf://{REPO}", cache=FingerprintCache(tmp_path / "cache"))
    local, _ = obtain_fingerprint(model_folder)
    assert how == FINGERPRINTED and fp.name == "tiny-llama"
    assert fp.settings["source_revision"] == COMMIT and fp.settings["source"] == f"hf://{REPO}"
    for circuit, sketch in local.sketches.items():
        np.testing.assert_array_equal(fp.sketches[circuit], sketch)
    assert _fetched(hub) == {"README.md", "config.json", "model.safetensors"}
    assert list((tmp_path / "scratch").iterdir()) == []  # the temporary download is gone


def test_second_time_the_cache_answers_without_a_download(hub: _Hub, tmp_path: Path) -> None:
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.obtain import CACHED, obtain_fingerprint

    cache = FingerprintCache(tmp_path / "cache")
    obtain_fingerprint(f"hf://{REPO}@main", cache=cache)
    hub.log.clear()
    fp, how = obtain_fingerprint(f"hf://{REPO}@{COMMIT}", cache=cache, name="suspect")
    assert how == CACHED and fp.name == "suspect" and fp.settings["source_revision"] == COMMIT
    assert _fetched(hub) == set() and any("/api/models/" in p for _, p in hub.log)


def test_keep_downloads_keeps_the_files(hub: _Hub, tmp_path: Path) -> None:
    from lineage.fingerprint.obtain import obtain_fingerprint

    with keep_downloads(tmp_path / "kept"):
        obtain_fingerprint(f"hf://{REPO}")
    kept = tmp_path / "kept" / REPO
    assert sorted(p.name for p in kept.iterdir() if p.is_file()) == ["README.md", "config.json", "model.safetensors"]


def test_unknown_repository_is_one_line(hub: _Hub) -> None:
    with pytest.raises(HubError, match=r"hf://acme/missing: cannot resolve on the hub") as info:
        resolve("hf://acme/missing")
    assert "\n" not in str(info.value)


def test_classify_and_pack_take_hub_paths(hub: _Hub, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app

    manifest = tmp_path / "refs.csv"
    manifest.write_text(f"name,path,family,role\ntiny,hf://{REPO}@main,llama,base\n")
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    built = runner.invoke(app, ["refs", "build", str(manifest), "--out", str(tmp_path / "pack")])
    assert built.exit_code == 0, built.output
    rows = (tmp_path / "pack" / "manifest.csv").read_text().splitlines()
    assert rows[1].endswith(f",{REPO}@{COMMIT}")
    result = runner.invoke(
        app, ["classify", f"hf://{REPO}", "--reference", str(tmp_path / "pack"), "--format", "json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)[0]
    assert verdict["family"] == "llama" and verdict["distances"]["tiny"] < 1e-6
    assert COMMIT in result.stdout  # the report says which commit was fingerprinted


def test_fingerprint_command_takes_a_hub_path(hub: _Hub, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app
    from lineage.fingerprint import load_fingerprint

    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["fingerprint", f"hf://{REPO}@main", "--out", str(tmp_path / "fps"), "--quiet"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "fps").iterdir())
    assert len(files) == 1
    assert load_fingerprint(files[0]).settings["source_revision"] == COMMIT


def _through_executor(kind: str, model_folder: Path, tmp_path: Path) -> None:
    """An `hf://` model and its local twin fingerprinted by workers: both ok, equal, the hub one stamped with its
    commit and cached under the commit's key (a second gather costs no download)."""
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.executors import ExecutorOptions, gather
    from lineage.fingerprint.obtain import CACHED, FINGERPRINTED
    from lineage.fingerprint.pipeline import FingerprintOptions

    cache = FingerprintCache(tmp_path / "cache")
    items = [("suspect", Path(f"hf://{REPO}@main"), "hub"), (None, model_folder, "local")]
    executor = ExecutorOptions(kind=kind, jobs=1)
    hub_out, local_out = gather(items, lambda: FingerprintOptions(device="cpu"), cache, None, executor)
    assert hub_out.ok and local_out.ok, (hub_out.error, local_out.error)
    assert (hub_out.how, hub_out.name, hub_out.key) == (FINGERPRINTED, "suspect", "hub")
    assert hub_out.fingerprint.settings["source_revision"] == COMMIT
    for circuit, sketch in local_out.fingerprint.sketches.items():
        np.testing.assert_array_equal(hub_out.fingerprint.sketches[circuit], sketch)
    again, _ = gather(items, lambda: FingerprintOptions(device="cpu"), cache, None, executor)
    assert again.ok and again.how == CACHED and again.fingerprint.settings["source_revision"] == COMMIT


def test_a_hub_model_goes_through_the_process_executor(hub: _Hub, model_folder: Path, tmp_path: Path) -> None:
    _through_executor("process", model_folder, tmp_path)


@pytest.mark.slow
def test_a_hub_model_goes_through_the_ray_executor(hub: _Hub, model_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    _through_executor("ray", model_folder, tmp_path)
