"""A true-peak lookahead limiter for a finished mix, offline and deterministic.

It works on the whole signal at once, so "lookahead" is reading ahead in the array rather than
delaying the audio. From the true peaks (4× oversampled, as BS.1770 measures them) it takes
the gain reduction each frame needs to stay under the ceiling, holds it over the lookahead,
lets it go at a steady `release_db_per_s`, and smooths it with two running means of `attack_s`
each. The hold is as long as the two means together, so every frame still gets at least the
reduction it needs: the gain curve has no corners (no clicks, no hard clipping) and reaches
each peak in time. Where nothing passes the ceiling the gain is exactly 1.

All of it is array arithmetic (a running maximum, a cumulative maximum, cumulative sums), so the
same samples always give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from livekomp.outputs.loudness import CONTEXT_FRAMES, sample_peaks

CEILING_DBTP = -1.0
# The gain curve is worked out for a little under the ceiling: a gain that changes under a
# peak moves the peak between the samples a little, and the file is rounded to 16 bits.
_MARGIN_DB = 0.1
_TRIES = 4
_BLOCK_FRAMES = 16


@dataclass(frozen=True, slots=True)
class Limiter:
    ceiling_dbtp: float = CEILING_DBTP
    attack_s: float = 0.0015  # each of the two running means; the lookahead is twice this
    release_db_per_s: float = 30.0

    def gain(
        self, samples: np.ndarray, sample_rate: int, peaks: np.ndarray | None = None
    ) -> np.ndarray:
        """(frames,) gain ≤ 1 that keeps `samples` × gain at or under the ceiling, checked by
        measuring the true peak of the result. `peaks`: `sample_peaks(samples)`, if known."""
        if peaks is None:
            peaks = sample_peaks(samples)
        target_db = self.ceiling_dbtp - _MARGIN_DB
        for _ in range(_TRIES):
            gain = self.envelope(peaks, sample_rate, target_db)
            # Only where the gain moved can the peaks have changed (the rest was under target).
            moved = maximum_filter1d(gain < 1.0, 2 * CONTEXT_FRAMES + 1)
            if not moved.any():
                return gain
            after = sample_peaks(samples * gain[:, None], only=moved)
            over_db = 20 * math.log10(float(after[moved].max())) - self.ceiling_dbtp
            if over_db <= 0:
                return gain
            target_db -= over_db + _MARGIN_DB  # rare: a few peaks bunched inside the attack
        return gain * 10 ** (-over_db / 20)  # never seen: the whole a little lower, to be sure

    def envelope(
        self, peaks: np.ndarray, sample_rate: int, target_db: float | None = None
    ) -> np.ndarray:
        """(frames,) gain that brings per-frame `peaks` under `target_db` (default: a little
        under the ceiling), not checked afterwards: for estimates such as the loudness the
        limiter will leave.

        The curve is worked out on blocks of a third of a millisecond, each taking the largest
        peak of itself and its neighbours, and drawn straight from one block's middle to the
        next: every frame still gets at least the reduction it needs, in a sixteenth of the
        work."""
        if target_db is None:
            target_db = self.ceiling_dbtp - _MARGIN_DB
        frames = len(peaks)
        if frames == 0:
            return np.ones(0)
        blocks = -(-frames // _BLOCK_FRAMES)
        padded = np.zeros(blocks * _BLOCK_FRAMES)
        padded[:frames] = peaks
        block_peaks = padded.reshape(blocks, _BLOCK_FRAMES).max(axis=1)
        block_peaks[1:] = np.maximum(block_peaks[1:], block_peaks[:-1].copy())
        block_peaks[:-1] = np.maximum(block_peaks[:-1], block_peaks[1:].copy())
        with np.errstate(divide="ignore"):
            over_db = np.maximum(0.0, 20 * np.log10(block_peaks) - target_db)
        if not over_db.any():
            return np.ones(frames)
        block_rate = sample_rate / _BLOCK_FRAMES
        mean = max(1, round(self.attack_s * block_rate))
        hold = 2 * mean - 1
        # Block k takes the largest reduction among blocks k … k+hold-1 (a forward window).
        held = maximum_filter1d(over_db, hold, mode="constant", cval=0.0, origin=-(hold // 2))
        # … then lets it go linearly in dB: the largest of held[j] - rate·(k - j) for j ≤ k.
        slope = np.arange(blocks) * (self.release_db_per_s / block_rate)
        released = np.maximum.accumulate(held + slope) - slope
        smooth = _trailing_mean(_trailing_mean(released, mean), mean)
        # Where no reduction is due the gain must be exactly 1, which the differences of a long
        # running sum need not give: a millionth of a dB is far below the 16-bit step.
        smooth[smooth < 1e-6] = 0.0
        return _between_middles(10 ** (-smooth / 20))[:frames]

    def apply(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        return samples * self.gain(samples, sample_rate)[:, None]


def _between_middles(block_gain: np.ndarray) -> np.ndarray:
    """Frame by frame, the straight line from one block's middle to the next (the ends held):
    a convex mix of two gains that each meet the frame's need, so it meets it too."""
    half = _BLOCK_FRAMES // 2
    # Frame j of a block lies (j + 0.5) / B past the middle of the block before it (j < B/2)
    # or (j + 0.5) / B - 1/2 past its own middle; these weights are exact binary fractions, so
    # a run of gains of 1 stays exactly 1.
    t = (np.arange(_BLOCK_FRAMES) + 0.5 + half) / _BLOCK_FRAMES
    t[half:] -= 1.0
    padded = np.concatenate([block_gain[:1], block_gain, block_gain[-1:]])
    before, own, after = padded[:-2, None], padded[1:-1, None], padded[2:, None]
    out = np.empty((len(block_gain), _BLOCK_FRAMES))
    out[:, :half] = before * (1 - t[:half]) + own * t[:half]
    out[:, half:] = own * (1 - t[half:]) + after * t[half:]
    return out.reshape(-1)


def _trailing_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of x[i-n+1 … i] for each i (the first value stands in before the start)."""
    if n <= 1 or len(x) == 0:
        return x
    sums = np.cumsum(np.concatenate([np.full(n, x[0]), x]))
    return (sums[n:] - sums[:-n]) / n


def reduction_db(gain: np.ndarray) -> float:
    """The most the limiter turned the signal down, in dB (0 where it never acted)."""
    low = float(gain.min()) if len(gain) else 1.0
    return -20 * math.log10(low) if low > 0 else math.inf
