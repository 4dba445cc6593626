"""The methods `--method` can name: an explicit dict, no import-time discovery."""

from __future__ import annotations

from lineage.compare.base import Method
from lineage.compare.lineage import LineageMethod
from lineage.compare.tensorguard import TensorGuardMethod
from lineage.errors import ClassificationError

METHODS: dict[str, type[Method]] = {
    LineageMethod.name: LineageMethod,
    TensorGuardMethod.name: TensorGuardMethod,
}

DEFAULT_METHOD = LineageMethod.name


def get_method(method: str | Method) -> Method:
    """The method named `method` (an instance is returned as is).

    Raises:
        ClassificationError: no method of that name.

    Example:
        >>> get_method("tensorguard").name
        'tensorguard'
    """
    if isinstance(method, Method):
        return method
    try:
        return METHODS[method]()
    except KeyError:
        raise ClassificationError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}") from None
