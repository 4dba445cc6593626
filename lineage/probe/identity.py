"""What the weight test reads: responses indexed by coordinates a model's training leaves exchangeable.

Two independently trained models never share the arbitrary coordinates their random initialisation fixed.
Some of those coordinates are exchangeable *in distribution*: flipping the sign of one residual-stream
coordinate of an RMSNorm model (in the embedding, in every matrix that reads or writes the residual) is a
symmetry of its initialisation and of Adam-style training, and so is flipping one gated-FFN unit (its `up`
row and `down` column) or one value dimension (its `v` row and the `o` columns that read it). A response
that changes sign with such a flip, compared between two models, therefore has an *exact* null: under
independence its signs are fair coins (`lineage.compare.identity`). A derivative keeps the signs.

So the fingerprint stores, besides the sketches, two kinds of sign-carrying responses, all to the model's
own normalised anchor embeddings (so two models of one tokenizer meet the same tokens):

- **residual responses** (`resid_vo`, `resid_ffn` per layer; `embed`, `head`): what each block writes to
  the residual stream for each anchor, and the anchor rows of the embedding and head, at a seeded subset of
  `RESIDUAL_COORDINATES` residual coordinates. Every function-preserving edit of the heads and FFN units
  (MergeLock maps, neuron permutations and rescaling, norm folding) leaves them unchanged; a rotation of
  the residual stream does not.
- **unit responses** (`gate`, `up`, `down` for a seeded sample of `UNIT_SAMPLE` FFN units; `v`, `o` for
  every value dimension): each unit's responses to `MIXTURES` seeded mixtures of the anchors (a unit's
  profile), read on the input side for the readers and on the output side for the writers. They follow a
  rotation of the residual stream (the anchors rotate with the model); a neuron permutation only reorders
  them, which the test undoes by matching units on their `gate` profile (a gate row has no sign symmetry).

Mixture weights are seeded by each anchor's token string (or id), so models that share only part of their
anchors still share that part of every mixture.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lineage.probe.anchors import Anchors

RESIDUAL_COORDINATES = 128  # residual coordinates kept (all of a narrower model)
UNIT_SAMPLE = 1024  # FFN units profiled per layer (all of a narrower FFN)
MIXTURES = 16  # anchor mixtures a unit's profile is read on
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


def unit_sample(units: int, seed: int, count: int = UNIT_SAMPLE) -> np.ndarray:
    """The (at most `count`) FFN units profiled in an FFN of `units` units: sorted, the same for every FFN of that
    width. An expert of a mixture profiles its share of `UNIT_SAMPLE`, so a layer stores about as many units as
    a dense one."""
    if units <= count:
        return np.arange(units, dtype=np.int64)
    purpose = f"units:{units}" if count == UNIT_SAMPLE else f"units:{units}:{count}"
    return np.sort(_generator(seed, purpose).choice(units, count, replace=False))


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
