"""The GPU module: responses of every weight tensor and circuit to seeded probes, on CUDA or the CPU."""
