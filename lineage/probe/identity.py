"""What the weight test reads: responses indexed by coordinates a model's training leaves exchangeable.

Two independently trained models never share the arbitrary coordinates their random initialisation fixed.
Some of those coordinates are exchangeable *in distribution*: flipping the sign of one residual-stream
coordinate of an RMSNorm model (in the embedding, in every matrix that reads or writes the residual) is a
symmetry of its initialisation and of Adam-style training, and so is flipping one gated-FFN unit (its `up`
row and `down` column) or one value dimension (its `v` row and the `o` columns that read it). A response
that changes sign with such a flip, compared between two models, therefore has an *exact* null: under
independence its signs are fair coins (`lineage.compare.identity`). A derivative keeps the signs.

So the fingerprint stores, besides the sketches, three kinds of sign-carrying responses; the first two are
read on the model's own normalised anchor embeddings (so two models of one tokenizer meet the same tokens):

- **residual responses** (`resid_vo`, `resid_ffn` per layer; `embed`, `head`): what each block writes to
  the residual stream for each anchor, and the anchor rows of the embedding and head, at a seeded subset of
  `RESIDUAL_COORDINATES` residual coordinates. Every function-preserving edit of the heads and FFN units
  (MergeLock maps, neuron permutations and rescaling, norm folding) leaves them unchanged; a rotation of
  the residual stream does not.
- **unit responses** (`gate`, `up`, `down` for the `UNIT_SAMPLE` FFN units whose gates respond most to the
  anchors, `profiled_units`; `v`, `o` for every value dimension): each unit's responses to `MIXTURES`
  seeded mixtures of the anchors (a unit's profile), read on the input side for the readers and on the output
  side for the writers. They follow a rotation of the residual stream (the anchors rotate with the model); a
  neuron permutation only reorders them, which the test undoes by matching units on their `gate` profile (a
  gate row has no sign symmetry).
  A mixture of experts' layer pools the units of every expert, and records which FFN each came from
  (`unit_expert`: the expert's index, `DENSE_FFN` or `SHARED_EXPERT`): no sign, so not a test input, only
  what lets the evidence say which expert was paired with which.

Mixture weights are seeded by each anchor's token string (or id), so models that share only part of their
anchors still share that part of every mixture.

The third kind does not rest on the embedding at all:

- **seeded responses** (`seeded_vo`, `seeded_ffn` per layer): what each block writes, at the *read*
  coordinates `R` (`seeded_split`), for `SEEDED_INPUTS` seeded random residual vectors that are zero on `R`
  and Gaussian on the other coordinates. A model whose embedding (and head) were replaced, but whose layers
  are another's, writes the same numbers there: the inputs are the same vectors for every model of a width.
  Why their signs are fair coins under the residual symmetry: flipping residual coordinates `S` maps a
  block `f` to `x -> S f(S x)`. For a flip of read coordinates only, `S x = x` (the input is zero there), so
  the block's write on `x` becomes `S f(x)`: its value at read coordinate `i` changes sign with `s_i` and
  with nothing else. The flips of the read coordinates alone are a symmetry of independent training (a
  subgroup of all flips), so under independence the terms the test sums per read coordinate are fair coins,
  exactly as for the anchor-based responses. (An input that were not zero on `R` would be flipped too, and
  the response would change by more than a sign.)

Nor does a fourth, which no rotation of the residual stream moves either: the profiled FFN units' profiles on
the model's *weight frame* (`frame_gate`, `frame_up`, `frame_down`; the frame's Gram `frame`), directions its own
gate rows define (`lineage.probe.frame`).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from lineage.probe.anchors import Anchors

if TYPE_CHECKING:  # torch only where a model is probed: comparing fingerprints must not import it
    import torch

RESIDUAL_COORDINATES = 128  # residual coordinates kept (all of a narrower model)
UNIT_SAMPLE = 1024  # FFN units profiled per layer (all of a narrower FFN)
MIXTURES = 16  # anchor mixtures a unit's profile is read on
#: Seeded residual inputs the blocks are read on. Four fit the zero columns that pad every product of a
#: reader or writer of the residual stream to whole kernel tiles (`lineage.probe.engine._padded_columns`:
#: 64 anchors + 12 fixed probes = 76, padded to 80), so they cost no multiplication.
SEEDED_INPUTS = 4
#: `unit_expert` labels of the units that belong to no routed expert (float16 holds every index below 2,048).
DENSE_FFN = -1
SHARED_EXPERT = -2
#: Stored dtype of the responses: the test needs their signs and rough sizes, not their last digits.
STORE_DTYPE = np.float16


def _generator(seed: int, purpose: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}|{purpose}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def residual_coordinates(width: int, seed: int) -> np.ndarray:
    """The residual coordinates kept for models of `width`: sorted, the same for every model of that width."""
    if width <= RESIDUAL_COORDINATES:
        return np.arange(width, dtype=np.int64)
    return np.sort(_generator(seed, f"coordinates:{width}").choice(width, RESIDUAL_COORDINATES, replace=False))


def profiled_units(scores: torch.Tensor, count: int = UNIT_SAMPLE) -> torch.Tensor:
    """The (at most `count`) FFN units profiled: every unit of an FFN of at most `count` units, else the `count`
    units whose gate responds most to the anchors. Sorted int64, on the scores' device.

    Args:
        scores: `[units]` each unit's score: the norm of its gate's responses to the anchor probes.
        count: how many to keep (an expert of a mixture profiles its share of `UNIT_SAMPLE`, so a layer stores
            about as many units as a dense one).

    Why ranked and not seeded: a derivative whose units were permuted stores the same units as its reference
    only if the choice follows the units, not their positions; the matching test (`lineage.compare.matching`)
    can find a unit's partner only where both sides stored it. The gate's responses to the model's own anchors
    are a function of the model, so every function-preserving map (a rotation of the residual stream, norm
    rescaling, the units' permutation, their sign flips and rescaling of `up` against `down`: a gate has
    neither) leaves each unit's score where it was; a fine-tune or a rounding moves the scores a little and
    swaps only units near the cut. The exact tests' null is untouched: a unit's sign flip leaves its gate alone,
    so the choice is blind to the flips their null rests on. (Their FFN-unit group loses a little power on an
    undisguised fine-tune of a wide FFN: a seeded sample of positions kept the same units on both sides, this
    choice keeps most of them.)
    """
    import torch

    units = scores.shape[0]
    if units <= count:
        return torch.arange(units, dtype=torch.int64, device=scores.device)
    # Ties (equal scores) broken by position, so one set of weights always stores the same units.
    order = torch.sort(-scores.double(), stable=True).indices[:count]
    return torch.sort(order).values


def mixing_weights(anchors: Anchors, seed: int, count: int = MIXTURES) -> np.ndarray:
    """`[P, count]` float32 weights of the anchor mixtures; rows of anchors outside the mixtures are 0.

    The token anchors are mixed when there are any (their weights seeded by the string, so a permuted or
    extended vocabulary mixes its shared tokens alike), the id anchors otherwise (seeded by the id).
    """
    out = np.zeros((len(anchors.ids), count), dtype=np.float32)
    if anchors.tokens:
        keys = [f"token:{t}" for t in anchors.tokens]
    else:
        keys = [f"id:{int(i)}" for i in anchors.ids]
    for row, key in enumerate(keys):
        out[row] = _generator(seed, f"mix:{key}").standard_normal(count)
    return out


def seeded_split(width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(read, support)`: the residual coordinates the seeded responses are read at, and the rest, on which the
    seeded inputs live (sorted int64 each; one model of `width` gets the same as any other).

    The read coordinates are the kept ones (`residual_coordinates`) when at least an eighth of the width (and
    `SEEDED_INPUTS` coordinates) is left for the inputs; a narrower model reads all but a seeded eighth of its
    coordinates (every read coordinate is one more sign for the test).
    """
    support = min(width - 1, max(SEEDED_INPUTS, -(-width // 8)))
    if width - RESIDUAL_COORDINATES >= support:
        read = residual_coordinates(width, seed)
    else:
        read = np.sort(_generator(seed, f"seeded-read:{width}").choice(width, width - support, replace=False))
    return read.astype(np.int64), np.setdiff1d(np.arange(width, dtype=np.int64), read)


def seeded_inputs(width: int, seed: int, count: int = SEEDED_INPUTS) -> np.ndarray:
    """`[count, width]` float32 seeded residual vectors: standard Gaussian on the support of `seeded_split`,
    exactly zero on its read coordinates (the module docstring says why)."""
    _, support = seeded_split(width, seed)
    out = np.zeros((count, width), dtype=np.float32)
    out[:, support] = _generator(seed, f"seeded-inputs:{width}").standard_normal((count, len(support)))
    return out
