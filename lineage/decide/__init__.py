"""Decisions: the K-Means family classifier seeded with the bases, the calibrated thresholds, the verdicts."""
