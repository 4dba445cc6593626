"""Catalog and battery builds keep transformers quiet: their logs hold lineage's lines, not redrawn bars."""

from __future__ import annotations

import pytest


def test_saves_print_no_progress_bars_and_restore_them(tmp_path, capfd):
    # transformers draws a "Writing model shards" bar per save: in a log it is a redrawn line per model.
    pytest.importorskip("transformers")
    from lineage.catalog.save import quiet_transformers
    from tests.checkpoints import tiny_hf_model

    model = tiny_hf_model("llama")
    model.save_pretrained(tmp_path / "loud")
    assert "Writing model shards" in capfd.readouterr().err  # the check below can fail
    with quiet_transformers():
        model.save_pretrained(tmp_path / "quiet")
    assert "Writing model shards" not in capfd.readouterr().err
    model.save_pretrained(tmp_path / "loud-again")
    assert "Writing model shards" in capfd.readouterr().err


def test_transformers_deprecation_warnings_stay_inside(recwarn):
    pytest.importorskip("transformers")
    import warnings

    from lineage.catalog.save import quiet_transformers

    with quiet_transformers():
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
    assert not recwarn.list
    warnings.warn("outside", FutureWarning, stacklevel=1)
    assert len(recwarn.list) == 1  # the filter is restored
