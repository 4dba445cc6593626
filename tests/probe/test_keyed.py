"""Keyed probes: a secret seeds the anchors, probes, kept coordinates, units and mixtures.

A forger who knows the public probes can edit a stolen model against them: here every matrix that reads the
residual stream loses the subspace of the public anchors' embeddings and of the public seeded inputs, every
writer its output there, and the public anchors' embedding rows are redrawn. Against the public key the copy
then looks unrelated; a key the forger does not know probes other tokens, mixtures and seeded inputs, and sees
the copy for what it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lineage.compare.identity import weight_test
from lineage.compare.similarity import sketch_distance_matrix
from lineage.errors import ClassificationError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model, key_id
from lineage.probe.anchors import anchor_ids
from lineage.probe.identity import seeded_inputs
from tests.checkpoints import write_checkpoint

CONFIG = {
    "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}  # fmt: skip
ANCHORS = 16
PUBLIC = FingerprintOptions(device="cpu", anchors=ANCHORS)
SECRET = FingerprintOptions(device="cpu", anchors=ANCHORS, key="a secret only the verifier holds")
READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
WRITERS = ("o_proj", "down_proj")


def _model(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d, f, v = CONFIG["hidden_size"], CONFIG["intermediate_size"], CONFIG["vocab_size"]
    out = {"model.embed_tokens.weight": torch.randn(v, d, generator=g), "model.norm.weight": torch.ones(d)}
    shapes = {"q_proj": (256, d), "k_proj": (128, d), "v_proj": (128, d), "o_proj": (d, 256),
              "gate_proj": (f, d), "up_proj": (f, d), "down_proj": (d, f)}  # fmt: skip
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = torch.ones(d)
        out[p + "post_attention_layernorm.weight"] = torch.ones(d)
        for name, shape in shapes.items():
            part = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            out[f"{p}{part}.{name}.weight"] = torch.randn(*shape, generator=g) / shape[1] ** 0.5
    return out


def _forge(tensors: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Edit the model against the public anchors (ids of the public seed: the model has no tokenizer) and the
    public seeded inputs."""
    ids = torch.from_numpy(anchor_ids(CONFIG["vocab_size"], ANCHORS, seed))
    embed = tensors["model.embed_tokens.weight"]
    seeded = torch.from_numpy(seeded_inputs(CONFIG["hidden_size"], seed))
    # The public probes' span (gains are 1: no norm to fold).
    basis, _ = torch.linalg.qr(torch.cat([embed[ids], seeded]).T)
    keep = torch.eye(basis.shape[0]) - basis @ basis.T
    out = dict(tensors)
    for name, w in tensors.items():
        if name.endswith(tuple(f"{r}.weight" for r in READERS)):
            out[name] = w @ keep  # blind to the public anchors and every mixture of them
        elif name.endswith(tuple(f"{r}.weight" for r in WRITERS)):
            out[name] = keep @ w  # writes nothing they could read back
    fresh = embed.clone()
    fresh[ids] = torch.randn(len(ids), embed.shape[1], generator=torch.Generator().manual_seed(99))
    out["model.embed_tokens.weight"] = fresh
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keyed")
    base = _model(0)
    g = torch.Generator().manual_seed(1)
    tuned = {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g) for k, v in base.items()}
    models = {"base": base, "forged": _forge(tuned, PUBLIC.probe_seed), "other": _model(2)}
    return {name: write_checkpoint(root / name, t, config=CONFIG) for name, t in models.items()}


def test_a_copy_forged_against_the_public_probes_hides_from_them(folders):
    base, forged = (fingerprint_model(folders[n], PUBLIC) for n in ("base", "forged"))
    assert weight_test(forged, base).p_value > 0.01  # the forge works against the key it was made for


def test_a_secret_key_sees_through_it(folders):
    base, forged, other = (fingerprint_model(folders[n], SECRET) for n in ("base", "forged", "other"))
    assert weight_test(forged, base).log10_p < -10
    assert weight_test(other, base).p_value > 0.01  # and still calls an unrelated model unrelated


def test_fingerprints_record_the_key_id_never_the_key(folders, tmp_path):
    from lineage.fingerprint.format import save_fingerprint

    fp = fingerprint_model(folders["base"], SECRET)
    assert fp.settings["key_id"] == key_id(SECRET.key) == SECRET.key_id != "public"
    path = save_fingerprint(fp, tmp_path / "base.fingerprint.safetensors")
    assert SECRET.key.encode() not in path.read_bytes()
    assert json.loads(json.dumps(fp.settings))["key_id"] == SECRET.key_id
    assert fingerprint_model(folders["base"], PUBLIC).settings["key_id"] == "public"
    assert "secret" not in repr(SECRET)


def test_fingerprints_of_different_keys_are_refused_in_one_line(folders):
    public, secret = fingerprint_model(folders["base"], PUBLIC), fingerprint_model(folders["base"], SECRET)
    with pytest.raises(ClassificationError, match="different probe keys"):
        sketch_distance_matrix([public], [secret])


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="key"):
        FingerprintOptions(key="")


def test_the_cli_takes_the_key_from_the_environment_and_refuses_mixed_keys(folders, tmp_path):
    from typer.testing import CliRunner

    from lineage.cli.app import app
    from lineage.fingerprint.format import load_fingerprint

    env = {"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"}
    keyed = CliRunner(env={**env, "LINEAGE_KEY": SECRET.key})
    result = keyed.invoke(app, ["fingerprint", str(folders["base"]), "--out", str(tmp_path / "fp"), "-q"])
    assert result.exit_code == 0, result.output
    [path] = (tmp_path / "fp").glob("*.fingerprint.safetensors")
    assert load_fingerprint(path).settings["key_id"] == SECRET.key_id
    public = CliRunner(env=env).invoke(app, ["distance", str(folders["other"]), str(path), "-q"])
    assert public.exit_code == 1 and "different probe keys" in public.output
