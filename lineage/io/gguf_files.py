"""Which `.gguf` files make one model: a single file, or the splits `name-00001-of-0000N.gguf`.

llama.cpp's `gguf-split` names the parts of one model `<prefix>-%05d-of-%05d.gguf` (`llama_split_path`);
a folder of GGUF files usually holds several quantisations of one model side by side (`Q4_K_M`, `Q8_0`),
each a model of its own. Only file names are looked at here; headers are read by `gguf_header`.
"""

from __future__ import annotations

import re
from pathlib import Path

from lineage.errors import CheckpointError
from lineage.io.constants import GGUF_SUFFIX

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})" + re.escape(GGUF_SUFFIX) + "$")


def is_gguf_file(path: Path) -> bool:
    """True for a file whose name ends in `.gguf`."""
    return path.suffix == GGUF_SUFFIX and path.is_file()


def gguf_models(folder: Path) -> list[Path]:
    """The GGUF models in a folder, one path each: a lone file, or the lowest-numbered split of a set.

    Args:
        folder: a folder.

    Returns:
        The paths, sorted; [] when the folder holds no visible `.gguf` file.
    """
    firsts: dict[str, Path] = {}
    for path in sorted(folder.glob(f"*{GGUF_SUFFIX}")):
        if path.name.startswith(".") or not path.is_file():
            continue
        m = _SPLIT.match(path.name)
        key = f"{m['prefix']}-of-{m['count']}" if m else path.name
        firsts.setdefault(key, path)  # sorted: the lowest split number comes first
    return sorted(firsts.values())


def gguf_model_files(path: Path) -> tuple[Path, ...]:
    """The files of the GGUF model at `path` (a `.gguf` file, any split of a set, or a folder holding one).

    Args:
        path: a `.gguf` file or a folder.

    Returns:
        The file, or every split of its set in order.

    Raises:
        CheckpointError: a folder with no or several GGUF models, or a split set with parts missing.
    """
    if path.is_dir():
        models = gguf_models(path)
        if not models:
            raise CheckpointError(path, f"no *{GGUF_SUFFIX} file in the folder; point at a model folder or file")
        if len(models) > 1:
            names = ", ".join(p.name for p in models[:3]) + (", ..." if len(models) > 3 else "")
            raise CheckpointError(
                path, f"the folder holds {len(models)} GGUF models ({names}); point at one file, or at the folder "
                "as a batch of models"
            )  # fmt: skip
        path = models[0]
    m = _SPLIT.match(path.name)
    if m is None:
        return (path,)
    count = int(m["count"])
    if not 1 <= int(m["no"]) <= count:
        raise CheckpointError(path, f"split number {int(m['no'])} of {count} is out of range: misnamed file")
    files = tuple(path.with_name(f"{m['prefix']}-{i:05d}-of-{count:05d}{GGUF_SUFFIX}") for i in range(1, count + 1))
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(
            path, f"split set of {count} files lacks {', '.join(missing[:3])}: the download is incomplete"
        )
    return files
