"""The statistics stage: probe responses in, fingerprint arrays out."""
