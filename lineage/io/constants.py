"""File names, suffixes and the safetensors dtype table: the facts about checkpoint files, kept as data.

Every other module of `lineage.io` names files through these constants, so the layouts lineage accepts are
listed in one place. Torch dtypes are named by attribute (`"float8_e4m3fn"`) rather than imported, so that a
torch without float8 still imports this module and the reader can say which dtype it cannot read.
"""

from __future__ import annotations

SAFETENSORS_SUFFIX = ".safetensors"
# lineage's own fingerprint files are safetensors too: never mistaken for model weights.
FINGERPRINT_SUFFIX = ".fingerprint.safetensors"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
PYTORCH_BIN = "pytorch_model.bin"
# PEFT adapter folders: the adapter's settings and its LoRA weights (read as base + merged delta).
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# GGUF (llama.cpp) model files, read with the `gguf` package; one model may be split over several files.
GGUF_SUFFIX = ".gguf"

# Pickled weights: lineage never loads these (unpickling runs arbitrary code); it only names them in the
# refusal message, so that a folder holding nothing else gets told to convert instead of "no model found".
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

# Pickles a Trainer writes next to the weights; on their own they do not make a folder a model folder.
TRAINER_PICKLES = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt"})

# The safetensors format caps the JSON header at 100 MB (MAX_HEADER_SIZE in the Rust crate); a larger
# length prefix means the file is not safetensors, and we must not allocate it.
MAX_HEADER_BYTES = 100_000_000
LENGTH_PREFIX_BYTES = 8
METADATA_KEY = "__metadata__"

# Bits per element of every dtype safetensors 0.8 knows; a dtype outside this table is rejected when the
# header is read. Sub-byte dtypes (F4, F6) are here so their byte sizes validate like the crate's do.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}

# safetensors dtype -> name of the torch dtype `safe_open(..., framework="pt")` returns. Dtypes missing here
# (sub-byte floats, complex) or missing from the installed torch cannot be read as real numbers.
TORCH_DTYPE_NAMES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "I64": "int64",
    "U64": "uint64",
    "F64": "float64",
}
