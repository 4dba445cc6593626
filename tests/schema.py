"""The documented keys of a verdict's JSON object (README, "A verdict"), shared by the tests that check them."""

VERDICT_KEYS = frozenset({
    "model", "verdict", "derived_from", "relation", "family", "p_value", "log10_p", "nearest", "evidence",
    "threshold", "rule", "method", "lineage_version", "probe_settings", "cluster", "distances", "distance",
})  # fmt: skip
