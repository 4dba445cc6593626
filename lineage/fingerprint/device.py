"""The device check every command makes before any work, whether or not a model will be fingerprinted.

`--device cuda` on a machine without CUDA must fail the same way in `fingerprint`, `classify`, `scan` and
`verify`, even when every fingerprint comes from the cache (which needs no device at all): one line, exit 1,
before anything is read. `auto` and `cpu` are always available, and checking them imports nothing, so a
command served from the cache never pays for importing torch.
"""

from __future__ import annotations

from lineage.errors import DeviceError

ALWAYS_AVAILABLE: tuple[str, ...] = ("auto", "cpu")


def check_device(choice: str) -> None:
    """Raise `DeviceError` unless `choice` ("auto", "cpu", "cuda", "cuda:N") can run probes here.

    Raises:
        DeviceError: CUDA was asked for and is not available, or the name is no device.

    Example:
        >>> check_device("cpu")  # nothing to check, nothing imported
    """
    if choice in ALWAYS_AVAILABLE:
        return
    if not choice.startswith("cuda"):
        raise DeviceError(f"unknown device '{choice}': use auto, cpu or cuda")
    from lineage.probe.device import select_device  # imports torch: only for a CUDA request

    select_device(choice)
