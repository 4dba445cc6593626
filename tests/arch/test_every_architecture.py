"""Every text architecture of transformers 5 (issue 23's 51), built tiny from its own config, through lineage.

Per architecture: every tensor gets a role or a named reason to be left unread; a copy with 2% noise on every
tensor (a stand-in for a fine-tune) is derived at the default level; an independent seed is not. The
architectures lineage refuses are refused by name, with the kind of layer that stops it. The default run
keeps the two that need the most views (gpt-oss's stacked, transposed, interleaved experts; GPT-2's Conv1D); the rest
are slow (`python -m pytest -m slow tests/arch`); `python -m tests.arch.harness ROOT` prints the whole table.
"""

from __future__ import annotations

import pytest

from lineage.errors import UnsupportedArchitectureError
from tests.arch import harness, zoo

#: Refused by name: the model type and the kind of layer the refusal names.
REFUSED: dict[str, str] = {
    "mamba": "state-space",
}
#: Read in the default run: one of each layout that needs a view or a new circuit.
DEFAULT = ("gpt_oss", "gpt2")  # Mixtral: tests/arch/test_upcycling.py
READ = tuple(t for t in zoo.ARCHITECTURES if t not in REFUSED)


def _marks(model_type: str) -> list:
    return [] if model_type in DEFAULT else [pytest.mark.slow]


@pytest.fixture(scope="module")
def root(tmp_path_factory):  # noqa: ANN201 - a Path
    pytest.importorskip("transformers")
    return tmp_path_factory.mktemp("every-architecture")


@pytest.mark.parametrize("model_type", [pytest.param(t, marks=_marks(t)) for t in READ])
def test_a_noisy_copy_is_derived_and_an_independent_seed_is_not(root, model_type: str) -> None:
    out = harness.run(model_type, root / model_type)
    assert out.refusal is None, out.refusal
    assert not out.unaccounted, f"tensors with no role and no reason: {out.unaccounted}"
    assert out.copy_log10_p < -10, out
    assert out.independent_log10_p >= -3, out  # the default level, 0.1%
    assert out.passed


@pytest.mark.parametrize("model_type", [pytest.param(t, marks=_marks(t)) for t in REFUSED])
def test_a_layout_lineage_does_not_probe_is_refused_by_name(root, model_type: str) -> None:
    base, _, _ = harness.models(model_type, root / model_type)
    with pytest.raises(UnsupportedArchitectureError, match=REFUSED[model_type]):
        harness.unaccounted(base)


def test_every_architecture_is_read_or_refused_by_name() -> None:
    assert len(zoo.ARCHITECTURES) == len(set(zoo.ARCHITECTURES)) == 51
    assert set(REFUSED) <= set(zoo.ARCHITECTURES)
    assert len(READ) >= 50
