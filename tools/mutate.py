"""Mutation testing of the p-value path: does the default suite notice a plausible bug?

Each mutant is one small edit of the source (an operator, a constant, an index, a dropped correction) that a
refactor could make by mistake. The script copies the package and its tests to a temporary folder, applies
one mutant at a time there (never to the working tree), runs the test files that cover the edited module
(`pytest -x`, slow cases left out, as the default run does) and says whether a test failed (the mutant is
*killed*) or every test passed (it *survived*). It prints each mutant's fate, the first test that killed it,
the kill rate, and the survivors with the reason each is harmless, where one is known (`harmless`).

The mutants are written by hand (`MUTANTS`), not generated: each is a bug that could ship, over
`lineage/compare/`, `lineage/decide/`, `lineage/probe/engine.py` and the FFN units `lineage/probe/` keeps, and
most of them would make the test accuse innocent models (a two-sided tail, a dropped correction, a search that
peeks at the signs) or lose derivatives. Run it after every change to those folders, and add a mutant for any
new step of the p-value:

    python tools/mutate.py                 # every mutant (54 pytest runs; 48 took about 46 min, busy 2 cores)
    python tools/mutate.py --list          # the mutants, without running them
    python tools/mutate.py signs-two-sided kmeans-no-sidak   # some of them

It lives in `tools/` rather than `bench/` (it measures the tests, not the speed) or `tests/` (pytest would
collect it, and it runs pytest itself). Exit code 1 when a mutant without a `harmless` reason survives.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The test files that cover each module (fast ones only: a mutant is run against all of them when it survives).
PVALUE_TESTS = ("tests/classify/test_statistics_pinned.py", "tests/classify/test_verdicts.py")
CLASSIFY_TESTS = (*PVALUE_TESTS, "tests/classify/test_calibrate.py", "tests/classify/test_classifier.py",
                  "tests/classify/test_levels.py")  # fmt: skip
IDENTITY_TESTS = (*PVALUE_TESTS, "tests/probe/test_keyed.py", "tests/probe/test_invariance.py",
                  "tests/probe/test_seeded_identity.py")  # fmt: skip
ENGINE_TESTS = ("tests/probe/test_probe_engine.py", "tests/probe/test_pinned_numbers.py",
                "tests/probe/test_pinned_layouts.py", "tests/probe/test_bad_models.py")  # fmt: skip
TESTS = {
    "lineage/compare/signs.py": PVALUE_TESTS,
    "lineage/compare/identity.py": (*IDENTITY_TESTS, "tests/probe/test_widths.py"),
    "lineage/compare/widths.py": ("tests/probe/test_widths.py",),
    "lineage/compare/similarity.py": (*PVALUE_TESTS, "tests/classify/test_classifier.py"),
    "lineage/decide/kmeans.py": CLASSIFY_TESTS,
    "lineage/decide/pvalues.py": CLASSIFY_TESTS,
    "lineage/decide/fdr.py": ("tests/classify/test_levels.py",),
    "lineage/decide/verdict.py": CLASSIFY_TESTS,
    "lineage/decide/calibrate.py": ("tests/classify/test_calibrate.py", "tests/classify/test_classifier.py"),
    "lineage/probe/engine.py": ENGINE_TESTS,
    "lineage/compare/quantised.py": ("tests/io/test_quant_copy.py",),
    "lineage/compare/matching.py": ("tests/classify/test_unit_matching.py", "tests/classify/test_levels.py"),
    "lineage/probe/identity.py": ("tests/classify/test_wide_matching.py", "tests/probe/test_pinned_layouts.py"),
    "lineage/probe/circuits.py": ("tests/classify/test_wide_matching.py", "tests/probe/test_pinned_layouts.py"),
    "lineage/compare/frames.py": ("tests/classify/test_frame_units.py", *PVALUE_TESTS),
    "lineage/probe/frame.py": ("tests/probe/test_frame.py", "tests/classify/test_frame_units.py"),
}


@dataclass(frozen=True)
class Mutant:
    """One edit: each `(old, new)` pair replaces text that occurs exactly once in `path`.

    Attributes:
        name: a short id.
        path: the module, relative to the repository.
        edits: `(old, new)` text pairs.
        effect: what the bug would do if it shipped.
        harmless: why a surviving mutant needs no test ("" when it must be killed).
    """

    name: str
    path: str
    edits: tuple[tuple[str, str], ...]
    effect: str
    harmless: str = ""
    tests: tuple[str, ...] = field(default=())

    def test_files(self) -> tuple[str, ...]:
        return self.tests or TESTS[self.path]


def _m(name: str, path: str, old: str, new: str, effect: str, harmless: str = "", *more: tuple[str, str]) -> Mutant:
    return Mutant(name, path, ((old, new), *more), effect, harmless)


SIGNS, IDENTITY, SIMILARITY = "lineage/compare/signs.py", "lineage/compare/identity.py", "lineage/compare/similarity.py"
WIDTHS, MATCHING = "lineage/compare/widths.py", "lineage/compare/matching.py"
KMEANS, PVALUES, FDR = "lineage/decide/kmeans.py", "lineage/decide/pvalues.py", "lineage/decide/fdr.py"
VERDICT, CALIBRATE, ENGINE = "lineage/decide/verdict.py", "lineage/decide/calibrate.py", "lineage/probe/engine.py"
UNITS, CIRCUITS = "lineage/probe/identity.py", "lineage/probe/circuits.py"
FRAMES, FRAME = "lineage/compare/frames.py", "lineage/probe/frame.py"
# fmt: off
MUTANTS: tuple[Mutant, ...] = (
    # -- the sign test ---------------------------------------------------------------------------------------
    _m("signs-two-sided", SIGNS, "float(log_ndtr(-z))", "float(log_ndtr(-abs(z)))",
       "anti-correlated pairs get small p-values; the null's rate doubles"),
    _m("signs-abs-z", SIGNS, "z = stable(float(f.sum()) / norm)", "z = stable(abs(float(f.sum())) / norm)",
       "the same, by another road"),
    _m("signs-no-constant", SIGNS, "min(0.0, math.log10(BD_CONSTANT) + ", "min(0.0, 0.0 + ",
       "p-values 3.18 times too small: the Gaussian tail is not a bound for Rademacher sums"),
    _m("signs-constant-argument", SIGNS, "0.5 * math.erfc(1.0)", "0.5 * math.erfc(math.sqrt(2.0))",
       "another constant than Bentkus and Dzindzalieta's"),
    _m("signs-norm-not-rooted", SIGNS, "norm = float(np.sqrt(np.sum(f * f)))", "norm = float(np.sum(f * f))",
       "z scaled wrongly: anti-conservative for small terms"),
    _m("signs-mean-for-sum", SIGNS, "z = stable(float(f.sum()) / norm)", "z = stable(float(f.mean()) / norm)",
       "z shrunk by the number of terms: power lost"),
    _m("signs-nan-kept", SIGNS, "    f = f[np.isfinite(f)]\n", "",
       "a NaN term makes z NaN, whose tail is taken as 0: p = 0, derived"),
    # -- the weight test ---------------------------------------------------------------------------------------
    _m("frames-not-paired", FRAMES, "    return linear_sum_assignment(-agree)",
       "    return np.arange(len(gram_a)), np.arange(len(gram_b))",
       "frame directions compared by their order of norm: a fine-tune that swaps two norms loses the group"),
    _m("frames-paired-by-up", IDENTITY,
       'pair_frames(a.identity["frame"], b.identity["frame"], side_a[0], side_b[0])',
       'pair_frames(a.identity["frame"], b.identity["frame"], side_a[1], side_b[1])',
       "the frames paired on a response that flips with the null: the search peeks at the signs"),
    _m("frame-of-up-rows", FRAME, 'return layer, layer["gate"], False', 'return layer, layer["up"], False',
       "the frame made of rows a unit's sign flip negates: the null's flips move the frame, and every profile"),
    _m("frame-gain-not-folded", FRAME, "            block = block * gain.double()", "            pass",
       "the frame ignores the norm gain: a copy with its gains folded into the gate gets another frame"),
    _m("identity-no-frame-group", IDENTITY, "        groups += _frame_units(a, b)", "        pass",
       "layers behind a new embedding and a rotation hide again"),
    _m("identity-embed-rows-at-suspect-positions", IDENTITY,
       'b.identity["embed"][keep_b]', 'b.identity["embed"][keep_a]',
       "the embedding group loses its power on every vocabulary edit"),
    _m("identity-head-rows-at-suspect-positions", IDENTITY,
       'b.identity.get("head", b.identity["embed"])[keep_b]', 'b.identity.get("head", b.identity["embed"])[keep_a]',
       "the head rows compared at the wrong anchors"),
    _m("identity-layer-rows-at-suspect-positions", IDENTITY,
       "{j: x[keep_b] for j, x in _layers(b, k).items()}", "{j: x[keep_a] for j, x in _layers(b, k).items()}",
       "the attention and FFN groups (and their layer matching) read the reference at the suspect's anchor "
       "positions: power lost on every vocabulary edit"),
    _m("identity-ffn-term-down-only", IDENTITY,
       "f = 0.5 * (_cos_rows(ua[i][rows], ub[j][match]) + _cos_rows(da[i][rows], db[j][match]))",
       "f = _cos_rows(da[i][rows], db[j][match])", "the FFN-unit group ignores the up responses: power only"),
    _m("identity-ffn-term-up-only", IDENTITY,
       "f = 0.5 * (_cos_rows(ua[i][rows], ub[j][match]) + _cos_rows(da[i][rows], db[j][match]))",
       "f = _cos_rows(ua[i][rows], ub[j][match])", "the FFN-unit group ignores the down responses: power only"),
    _m("identity-units-matched-by-up", IDENTITY, "na = _unit_rows(g)", "na = _unit_rows(ua[i])",
       "units matched on a response that flips with the null: the search peeks at the signs", "",
       ("nb = {j: _unit_rows(gb[j]) for j in ib}", "nb = {j: _unit_rows(ub[j]) for j in ib}")),
    _m("identity-residual-layers-by-signed-score", IDENTITY,
       'score = np.abs(np.einsum("ick,jck->ijc", sa, sb)).sum(-1)', 'score = np.einsum("ick,jck->ijc", sa, sb).sum(-1)',
       "the layer search peeks at the signs: anti-conservative"),
    _m("identity-seeded-terms-absolute", IDENTITY,
       'return [GroupResult("seeded residual", sign_test(terms), layers)]',
       'return [GroupResult("seeded residual", sign_test(np.abs(terms)), layers)]',
       "every seeded term positive: every pair of equal widths derived"),
    _m("identity-seeded-per-layer-terms", IDENTITY,
       'return [GroupResult("seeded residual", sign_test(terms), layers)]',
       'return [GroupResult("seeded residual", sign_test(np.concatenate(per_layer)), layers)]',
       "one term per layer and coordinate: terms of one coordinate are not independent across layers"),
    _m("identity-value-layer-by-signed-sum", IDENTITY,
       "q = int(np.abs(f).sum(1).argmax())", "q = int(f.sum(1).argmax())",
       "the value layer search peeks at the signs: anti-conservative"),
    _m("identity-value-terms-absolute", IDENTITY, "terms.append(f[q])", "terms.append(np.abs(f[q]))",
       "every term positive: every pair derived"),
    _m("identity-no-bonferroni", IDENTITY, "best.test.log10_p + math.log10(len(groups))", "best.test.log10_p",
       "p-values up to five times too small"),
    _m("identity-largest-group", IDENTITY, "best = min(groups, key=", "best = max(groups, key=",
       "the least significant group reported"),
    _m("widths-embedding-score-signed", WIDTHS, "score = np.abs(ea @ eb.T)", "score = ea @ eb.T",
       "the coordinate pairing peeks at the signs: anti-conservative across widths"),
    _m("widths-layer-score-signed", WIDTHS, "sum(np.abs(_unit_columns(layer[k]).astype(np.float32) @ ub[k].T)",
       "sum((_unit_columns(layer[k]).astype(np.float32) @ ub[k].T)",
       "the coordinate pairing peeks at the signs: anti-conservative across widths"),
    _m("widths-many-to-one", WIDTHS, "ca, cb = linear_sum_assignment(score, maximize=True)",
       "ca, cb = np.arange(len(score)), score.argmax(1)",
       "a reference coordinate in several terms: dependent signs when the reference's flips carry the null"),
    _m("widths-value-score-signed", WIDTHS, "score = np.round(np.abs(unit_rows(readers_a) @ unit_rows(readers_b).T)",
       "score = np.round((unit_rows(readers_a) @ unit_rows(readers_b).T)",
       "the value pairing peeks at the reader signs: anti-conservative across head counts"),
    _m("identity-no-width-pairing", IDENTITY, "    if not same_width:\n", "    if False:\n",
       "coordinates of two widths compared by stored position: width-pruned copies lose the residual groups"),
    _m("identity-seeded-across-widths", IDENTITY, "if residual and same_width:", "if residual:",
       "seeded inputs of two widths compared as if they were one: noise and a wrong Bonferroni count"),
    _m("identity-min-signs-one", IDENTITY, "MIN_SIGNS = 8", "MIN_SIGNS = 1", "groups of a few signs tested",
       "the bound is exact for any number of terms; a tiny group only adds to the Bonferroni factor"),
    _m("identity-ffn-terms-keyed-by-reference", IDENTITY,
       "terms[(i, int(r)) if flip_a else (j, int(m))]", "terms[(j, int(m)) if flip_a else (i, int(r))]",
       "units matched to one reference unit summed into one term",
       "valid where reachable: a suspect with gate profiles has a gate, so it declares the FFN symmetry (flip_a); "
       "the suspect units matched to one reference unit then sum to a term of symmetric law, whose sign is a fair "
       "coin independent of its size and of the other terms (disjoint units): only power changes"),
    _m("identity-symmetry-on-both-sides", IDENTITY,
       'return any(symmetry in fp.settings.get("symmetry", ()) for fp in (a, b))',
       'return all(symmetry in fp.settings.get("symmetry", ()) for fp in (a, b))',
       "fewer groups tested when one side lacks the symmetry",
       "conservative: groups are only dropped; every fingerprint of the tests declares the same symmetries"),
    _m("identity-residual-layer-argmin", IDENTITY, "enumerate(score.argmax(1))", "enumerate(score.argmin(1))",
       "the worst-matching reference layer compared: power lost"),
    # -- shared anchors ---------------------------------------------------------------------------------------
    _m("similarity-id-offset-of-the-suspect", SIMILARITY,
       "return ia + a.id_offset, ib + b.id_offset", "return ia + a.id_offset, ib + a.id_offset",
       "a token-anchored fingerprint against an id-anchored one compared at the wrong rows"),
    _m("similarity-token-pairs-swapped", SIMILARITY, "pairs = [(i, where_b[t])", "pairs = [(where_b[t], i)",
       "the token positions of the two sides swapped"),
    # -- the verdict --------------------------------------------------------------------------------------------
    _m("kmeans-no-sidak", KMEANS, "sidak_log10(float(logs[best]), len(self.references_))",
       "sidak_log10(float(logs[best]), 1)", "verdict p-values R times too small"),
    _m("kmeans-sidak-over-families", KMEANS, "sidak_log10(float(logs[best]), len(self.references_))",
       "sidak_log10(float(logs[best]), len(self.classes_))",
       "corrected for the families, not the references tried: too small with several references per family"),
    _m("kmeans-best-is-nearest", KMEANS, "best = int(np.lexsort((d, logs))[0])", "best = int(order[0])",
       "a derivative nearer another base is missed"),
    _m("kmeans-best-by-distance-first", KMEANS, "np.lexsort((d, logs))", "np.lexsort((logs, d))",
       "the same, by another road"),
    _m("kmeans-decide-on-raw-p", KMEANS, "if log10_p < math.log10(self.alpha):",
       "if float(logs[best]) < math.log10(self.alpha):", "derived on the uncorrected p-value"),
    _m("kmeans-alpha-inclusive", KMEANS, "if log10_p < math.log10(self.alpha):",
       "if log10_p <= math.log10(self.alpha):", "derived at p = alpha exactly",
       "a continuous p-value equals alpha with probability 0"),
    _m("kmeans-base-of-the-nearest", KMEANS, "derived_from=self.bases_[best]", "derived_from=self.bases_[order[0]]",
       "derived from the nearest reference's base, not the tested one"),
    _m("pvalues-sidak-without-tries", PVALUES, "tries * math.log1p(-p)", "math.log1p(-p)",
       "no correction for the references tried"),
    _m("pvalues-linear-too-early", PVALUES, "if log10_p > -12:", "if log10_p > -2:",
       "R p used where 1 - (1 - p)^R is computable", "R p >= 1 - (1 - p)^R: only conservative, by R p / 2 at most"),
    _m("pvalues-unclipped", PVALUES,
       "return min(0.0, log10_p + math.log10(tries))", "return log10_p + math.log10(tries)",
       "a p-value above 1", "unreachable: log10_p <= -12 there, so it needs 1e12 references"),
    _m("pvalues-floor-wrong-way", PVALUES, "10.0 ** max(log10_p, P_FLOOR_LOG10)", "10.0 ** min(log10_p, P_FLOOR_LOG10)",
       "every p-value printed as 1e-300"),
    _m("verdict-alpha-one-percent", VERDICT, "DEFAULT_ALPHA = 0.001", "DEFAULT_ALPHA = 0.01",
       "the default level ten times looser than the README says"),
    _m("fdr-step-up-q-over-m", FDR, "math.log10(k * q / m)", "math.log10(k * q)",
       "Benjamini-Hochberg without dividing by the number of tests"),
    _m("fdr-strict", FDR, "if x <= math.log10(k * q / m)", "if x < math.log10(k * q / m)",
       "a p-value at the step-up line exactly not rejected", "conservative, and of probability 0"),
    _m("quantised-copy-limit-doubled", "lineage/compare/quantised.py", "return self.ratio <= self.limit",
       "return self.ratio <= 2 * self.limit", "fine-tunes then quantised called quantised copies"),
    # -- the matching test (an empirical null) ----------------------------------------------------------------
    _m("matching-updown-signed", MATCHING, "np.abs(_signature(ua[i], da[i]) @ sig_b[j].T).argmax(1)",
       "(_signature(ua[i], da[i]) @ sig_b[j].T).argmax(1)",
       "the up/down pairing reads the signs a thief flips: the full disguise hides again"),
    _m("matching-chance-uniform", MATCHING, "return max(1.0 / f, float(crowd))", "return 1.0 / f",
       "pairings crowding onto a few reference units score as if they agreed against 1/f: innocents accused"),
    _m("matching-no-share-rule", MATCHING, "self.share >= MIN_AGREEMENT and", "",
       "the share rule dropped: a weak agreement over many units passes on its tail alone"),
    # -- which FFN units a wide FFN keeps (what the matching test can pair) -------------------------------------
    _m("units-by-position", UNITS, "order = torch.sort(-scores.double(), stable=True).indices[:count]",
       "order = torch.arange(count, device=scores.device)",
       "units kept by position: a permuted derivative keeps other units than its reference (the cap 1024 / f)"),
    _m("units-least-responsive", UNITS, "torch.sort(-scores.double(), stable=True)",
       "torch.sort(scores.double(), stable=True)", "the units whose gates respond least kept: other units stored"),
    _m("units-unsorted", UNITS, "return torch.sort(order).values", "return order",
       "the kept units in score order: the gather of their rows needs them sorted"),
    _m("units-score-on-seeded-inputs", CIRCUITS, "units = profiled_units(gate[:n].norm(dim=0), count)\n"
       "            gate_prof = gate_prof[:, units]", "units = profiled_units(gate.norm(dim=0), count)\n"
       "            gate_prof = gate_prof[:, units]",
       "the score reads the seeded inputs too, which a rotation of the residual stream changes"),
    _m("units-up-of-other-units", CIRCUITS, "gate_prof, up_prof = prof[:, units], prof[:, units + width]",
       "gate_prof, up_prof = prof[:, units], prof[:, units + width - 1]",
       "a fused gate_up's up profiles read from the neighbouring rows"),
    # -- the probe engine --------------------------------------------------------------------------------------
    _m("engine-biased-std", ENGINE, "std = (var * count / max(count - 1, 1)).sqrt()", "std = var.sqrt()",
       "the gradient std of the TensorGuard features biased"),
    _m("engine-adversarial-row", ENGINE, "start = n + m + len(fixed)", "start = n + m",
       "the adversarial probes read the fixed probes' responses"),
    _m("engine-no-gradient-normalisation", ENGINE,
       "grad_x = gram / start_resp.norm(dim=1, keepdim=True).clamp_min(1e-30)",
       "grad_x = gram", "the adversarial probes refined along an unnormalised gradient",
       "an equivalent mutant: the FGSM step reads only sign(grad), which a positive scale per probe keeps"),
    _m("engine-fixed-rows-from-inputs", ENGINE, "fixed_resp = y[n + m : start]", "fixed_resp = y[n : start - m]",
       "the fixed probes' responses read from the profile rows"),
    _m("engine-padding-of-8", ENGINE, "multiple: int = 16", "multiple: int = 8", "other zero padding",
       "zero padding columns, whose outputs are never read: no number moves (tests/probe/test_streaming.py pins that)"),
    _m("engine-block-2mb", ENGINE, "else (8 << 20)", "else (2 << 20)", "other block size",
       "the block size is speed only: no number moves (tests/probe/test_streaming.py pins that)"),
    _m("engine-nonfinite-or", ENGINE, "if not bool(torch.isfinite(y_t.sum())) and not",
       "if not bool(torch.isfinite(y_t.sum())) or not", "the cheap check made expensive",
       "the same answer: a non-finite entry makes the sum non-finite, so `or` only adds a full check"),
)
# fmt: on


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("lineage", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _apply(root: Path, mutant: Mutant) -> str:
    """Apply the mutant's edits under `root`; returns the original text to restore."""
    path = root / mutant.path
    original = text = path.read_text(encoding="utf-8")
    for old, new in mutant.edits:
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"mutant {mutant.name}: {old!r} occurs {count} times in {mutant.path} (must be once)")
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return original


def _pytest(root: Path, files: tuple[str, ...], timeout: float) -> tuple[str, str, float]:
    """Run pytest on `files` under `root`: ("passed" | "failed" | "timeout" | "error", first failing test, s)."""
    env = {**os.environ, "PYTHONPATH": str(root), "LINEAGE_CACHE": str(root / ".cache"), "LINEAGE_NO_PROGRESS": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", "", time.perf_counter() - start
    seconds = time.perf_counter() - start
    out = done.stdout + done.stderr
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.MULTILINE)
    if done.returncode == 0:
        return "passed", "", seconds
    if done.returncode == 1 and failed:
        return "failed", failed.group(1), seconds
    return "error", (failed.group(1) if failed else out.strip().splitlines()[-1:] or [""])[0], seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (all when none)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant (a hang counts as killed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:48s} {m.path:32s} {m.effect}")
        return 0
    with tempfile.TemporaryDirectory(prefix="lineage-mutate-") as tmp:
        root = Path(tmp)
        _copy_tree(root)
        where = subprocess.run([sys.executable, "-c", "import lineage; print(lineage.__file__)"], cwd=root,
                               env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True)  # fmt: skip
        if not where.stdout.strip().startswith(str(root)):  # an installed lineage would shadow the mutated copy
            found = where.stdout.strip() or where.stderr
            print(f"the copy is not what `import lineage` finds: {found}", file=sys.stderr)
            return 2
        for m in chosen:  # every edit must apply before any test runs
            (root / m.path).write_text(_apply(root, m), encoding="utf-8")
        for files in dict.fromkeys(m.test_files() for m in chosen):
            status, where, seconds = _pytest(root, files, args.timeout)
            if status != "passed":
                print(f"the unmutated copy does not pass {' '.join(files)}: {status} {where}", file=sys.stderr)
                return 2
        survivors = []
        for m in chosen:
            original = _apply(root, m)
            try:
                status, where, seconds = _pytest(root, m.test_files(), args.timeout)
            finally:
                (root / m.path).write_text(original, encoding="utf-8")
            killed = status != "passed"
            print(f"{'killed  ' if killed else 'SURVIVED'} {m.name:48s} {seconds:6.1f}s  {where or status}", flush=True)
            if not killed:
                survivors.append(m)
    killed = len(chosen) - len(survivors)
    print(f"\nkilled {killed} of {len(chosen)} mutants ({killed / max(len(chosen), 1):.0%})")
    for m in survivors:
        print(f"  survived {m.name}: {m.effect}\n    {'harmless: ' + m.harmless if m.harmless else 'NOT EXPLAINED'}")
    return 1 if any(not m.harmless for m in survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
