"""Jobs over many models: manifests, scans, classify/distance over paths, evaluations."""
