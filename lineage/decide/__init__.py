"""Decisions: the K-Means family classifier seeded with the bases, the unknown rule and the calibrated
thresholds, the verdicts, their p-values and Benjamini-Hochberg across suspects."""
