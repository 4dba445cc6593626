"""Choosing the compute device, and the settings that make CPU and CUDA agree.

All probe arithmetic is float32 with TF32 off: CUDA's default TF32 matmuls would differ from the CPU by
about 1e-3 relative, far outside the 1e-4 agreement the fingerprints promise.
"""

from __future__ import annotations

import torch

from lineage.errors import DeviceError


def select_device(choice: str = "auto") -> torch.device:
    """The device for `choice` ("auto", "cpu", "cuda" or "cuda:N").

    Raises:
        DeviceError: CUDA was asked for and is not available.
    """
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device is available here; use --device cpu or auto")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif choice != "cpu":
        raise DeviceError(f"unknown device '{choice}': use auto, cpu or cuda")
    return torch.device(choice)
