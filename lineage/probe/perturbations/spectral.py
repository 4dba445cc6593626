"""Low- and high-frequency probes: Gaussian spectra kept below / above a cut, back through an inverse FFT."""

from __future__ import annotations

import torch

from lineage.probe.perturbations.base import Perturbation, unit_rms


class _Band(Perturbation):
    low: bool = True
    fraction: float = 0.1

    def make(self, n: int, generator: torch.Generator) -> torch.Tensor:
        bins = n // 2 + 1
        spec = torch.complex(torch.randn(self.count, bins, generator=generator),
                             torch.randn(self.count, bins, generator=generator))
        cut = max(1, int(bins * self.fraction))
        mask = torch.zeros(bins, dtype=torch.bool)
        if self.low:
            mask[:cut] = True
        else:
            mask[bins - cut :] = True
        x = torch.fft.irfft(spec * mask, n=n)
        return unit_rms(x)


class LowFrequency(_Band):
    name = "low_frequency"
    count = 3
    low = True


class HighFrequency(_Band):
    name = "high_frequency"
    count = 3
    low = False
