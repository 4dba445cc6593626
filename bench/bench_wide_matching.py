"""The unit matching test on FFNs wider than 2,048 units: small models of one seed's world, trained briefly.

Before pipeline 9 a fingerprint profiled a seeded sample of 1,024 units a layer, so a derivative whose units
were permuted stored other units than its reference and could agree on about `1024 / f` of them, below the
rule's 50% beyond 2,048 units. Now the units whose gates respond most to the anchors are kept
(`lineage.probe.identity.profiled_units`), a choice every function-preserving map leaves alone.

One world per seed, every model of the same shape (a Llama layout, tied embeddings):
- `base`, trained on stream A; its derivatives: `finetune` (trained on further on stream B),
  `disguised-signed` (every disguise at once with the FFN units' signs redrawn, `lineage.catalog.disguise`),
  the same int4 (`lineage.catalog.operations.quantize`), and `finetune-disguised-signed`, the same of the
  fine-tune, alone and int4;
- models that never saw its weights: `twin-1`, `twin-2` (other initialisations, the same tokens),
  `student` (distilled from `base`), `other-data` (another initialisation, stream B).

Prints, per derivative, how much of the base's kept units it keeps (its top units by the same score; for a
disguised copy the score is the same function, so its overlap is the undisguised copy's: the fine-tune's, or
an int4 copy's), and its matching test against `base`; then every null pair (suspect and reference of
different lineages, both directions): how many pass the rule, the largest share and its pair:

    python bench/bench_wide_matching.py --seed 1 [--hidden 64 --ffn 4096 --layers 4 --steps 80]

Needs transformers; about two minutes a world on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path


def _streams(seed: int, vocab: int):  # noqa: ANN202 - two token streams
    import torch

    gen = torch.Generator().manual_seed(seed)
    n = torch.arange(12000)
    a = (n * 37 % (vocab - 3) + torch.randint(0, 3, (12000,), generator=gen)).long()
    b = (n * 53 % (vocab - 5) + torch.randint(0, 5, (12000,), generator=gen)).long()
    return a, b


def _world(args: argparse.Namespace) -> tuple[dict, dict[str, str]]:
    """`(models, lineage of each)`."""
    import torch

    from lineage.catalog import disguise, operations
    from lineage.catalog.architectures import Shape, make_model
    from lineage.catalog.train import TrainConfig, distill_lm, train_lm

    shape = Shape("llama", hidden=args.hidden, layers=args.layers, heads=4, kv_heads=2, intermediate=args.ffn,
                  vocab=512, tied=True)  # fmt: skip
    s = 100 * args.seed
    steps = TrainConfig(steps=args.steps, lr=3e-3, batch_size=8, seq_len=32, seed=s, warmup=4)
    tune = TrainConfig(steps=args.steps // 2, lr=1e-3, batch_size=8, seq_len=32, seed=s + 1, warmup=2)
    a, b = _streams(s, 512)
    made = {name: make_model(shape, bos=0, eos=1, pad=2, seed=s + k)
            for k, name in enumerate(("base", "twin-1", "twin-2", "student", "other-data"))}  # fmt: skip
    torch.set_num_threads(1)  # models this narrow train fastest on one thread
    for name in ("base", "twin-1", "twin-2"):
        train_lm(made[name], a, steps)
    train_lm(made["other-data"], b, steps)
    distill_lm(made["student"], made["base"], a, steps)
    made["finetune"] = copy.deepcopy(made["base"])
    train_lm(made["finetune"], b, tune)
    made["int4"] = operations.quantize(copy.deepcopy(made["base"]), bits=4)
    gen = torch.Generator().manual_seed(s + 7)
    for source in ("base", "finetune"):
        name = "disguised-signed" if source == "base" else "finetune-disguised-signed"
        made[name] = disguise.disguise_all(disguise.rescale_ffn(copy.deepcopy(made[source]), gen, signed=True), gen)
        made[f"{name}-int4"] = operations.quantize(copy.deepcopy(made[name]), bits=4)
    lineage = {name: name if name in ("twin-1", "twin-2", "student", "other-data") else "base" for name in made}
    return made, lineage


def _kept(model, anchors) -> list:  # noqa: ANN001 - a transformers Llama and anchor ids
    """Per layer, the units the fingerprint keeps (`profiled_units` on the gate's responses to the anchors)."""
    import torch

    from lineage.probe.circuits import rms_unit
    from lineage.probe.identity import profiled_units

    eps = model.config.rms_norm_eps
    with torch.no_grad():  # the probes, then each FFN's input norm, as `lineage.probe.circuits` reads them
        probes = rms_unit(model.model.embed_tokens.weight[torch.as_tensor(anchors)].float(), eps)
        out = []
        for layer in model.model.layers:
            h = rms_unit(probes, eps) * layer.post_attention_layernorm.weight
            out.append(set(profiled_units((h @ layer.mlp.gate_proj.weight.T).norm(dim=0)).tolist()))
    return out


def _overlap(a: list, b: list) -> float:
    return sum(len(x & y) for x, y in zip(a, b)) / sum(len(x) for x in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--ffn", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path, default=None, help="where to write the models (a temporary folder)")
    args = parser.parse_args()
    from lineage.compare.identity import weight_test
    from lineage.compare.matching import unit_matching
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

    root = args.out or Path(tempfile.mkdtemp(prefix="wide-matching-"))
    models, lineage = _world(args)
    fps = {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        fps[name] = fingerprint_model(root / name, FingerprintOptions(device="cpu"))
    kept = {name: _kept(models[name], fps["base"].anchors) for name in ("base", "finetune", "int4")}
    print(f"seed {args.seed}: hidden {args.hidden}, FFN {args.ffn} units, {args.layers} layers, {args.steps} steps")
    print(f"kept units shared with base: finetune {_overlap(kept['finetune'], kept['base']):.1%}, "
          f"int4 {_overlap(kept['int4'], kept['base']):.1%}")
    for name in [n for n in models if lineage[n] == "base" and n != "base"]:
        m = unit_matching(fps[name], fps["base"])
        p = weight_test(fps[name], fps["base"]).p_value
        print(f"{name}: exact p = {p:.3g}; {m.rule() if m else 'not applicable'}; derived: {bool(m and m.derived)}")
    nulls = [(s, r) for s in models for r in models if lineage[s] != lineage[r] and r != "int4" and s != "int4"]
    results = {(s, r): unit_matching(fps[s], fps[r]) for s, r in nulls}
    passed = sum(bool(m and m.derived) for m in results.values())
    worst = max(results, key=lambda k: results[k].share if results[k] else 0.0)
    multiple = max(m.share / m.chance for m in results.values() if m)
    print(f"null pairs: {passed} of {len(results)} derived by unit matching; largest share "
          f"{results[worst].share:.2%} ({worst[0]} against {worst[1]}, chance {results[worst].chance:.2%}); "
          f"largest share over chance {multiple:.1f}")


if __name__ == "__main__":
    main()
