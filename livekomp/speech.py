"""A rendered spoken line: the type the voice produces and the audio outputs play."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Speech:
    """A rendered line: mono float32 samples at `sample_rate`, and who spoke it."""

    samples: np.ndarray
    sample_rate: int
    backend: str
    cached: bool = False

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate
