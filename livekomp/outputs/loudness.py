"""Loudness and true peak, measured as ITU-R BS.1770 says: K-weighted, gated loudness in LUFS
(by pyloudnorm) and the true peak in dBTP from a 4× oversampled signal.

Every function takes (frames, channels) or (frames,) float samples and is deterministic: the
same samples give the same figure, so a rehearsal's mix (and its WAV) is the same for a seed.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
from scipy.signal import firwin, resample_poly

BLOCK_S = 0.4  # BS.1770's gating block (momentary loudness)
OVERSAMPLE = 4  # BS.1770's true-peak meter: 4× at 48 kHz
_CHUNK_FRAMES = 1 << 13  # oversampled a chunk at a time (170 ms): memory stays flat on a long set
CONTEXT_FRAMES = 16  # either side of a chunk: longer than the filter reaches (10 frames)
# The oversampling filter: resample_poly's own design (a Kaiser-windowed sinc, 10 zero
# crossings a side; resample_poly scales it by the factor), made once, not for every chunk.
_FILTER = firwin(20 * OVERSAMPLE + 1, 1 / OVERSAMPLE, window=("kaiser", 5.0))


def integrated_lufs(samples: np.ndarray, sample_rate: int) -> float:
    """Gated integrated loudness (BS.1770: −70 LUFS absolute gate, −10 LU relative), or −inf
    for silence. A signal shorter than one 400 ms block is measured as one block of its own
    length; one shorter than a millisecond counts as silence."""
    frames = len(samples)
    if frames < sample_rate / 1000:
        return -math.inf
    block_s = min(BLOCK_S, frames / sample_rate)
    meter = pyloudnorm.Meter(sample_rate, block_size=block_s)
    data = np.asarray(samples, dtype=np.float64)
    lufs = float(meter.integrated_loudness(data))
    return lufs if math.isfinite(lufs) else -math.inf


def sample_peaks(samples: np.ndarray, only: np.ndarray | None = None) -> np.ndarray:
    """(frames,) for each frame n, the largest magnitude in any channel of the signal rebuilt
    4× oversampled between frame n and frame n+1 (and of the frame itself): the inter-sample
    peaks that a DAC or a lossy codec would produce, not just the sample values.

    With `only` (a (frames,) bool mask), just the stretches around the frames it marks are
    oversampled; elsewhere the result is the frames' own magnitudes, a lower bound."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    frames = len(x)
    peaks = _largest_across(np.abs(x))
    for start in range(0, frames, _CHUNK_FRAMES):
        stop = min(frames, start + _CHUNK_FRAMES)
        if only is not None and not only[start:stop].any():
            continue
        lo, hi = max(0, start - CONTEXT_FRAMES), min(frames, stop + CONTEXT_FRAMES)
        up = np.abs(resample_poly(x[lo:hi], OVERSAMPLE, 1, axis=0, window=_FILTER))
        first = (start - lo) * OVERSAMPLE
        up = _largest_across(up[first : first + (stop - start) * OVERSAMPLE])
        np.maximum(
            peaks[start:stop], _largest_across(up.reshape(-1, OVERSAMPLE)), out=peaks[start:stop]
        )
    return peaks


def _largest_across(x: np.ndarray) -> np.ndarray:
    """The largest value in each row (column by column: faster than `max(axis=1)` on a few
    columns)."""
    out = x[:, 0].copy()
    for column in range(1, x.shape[1]):
        np.maximum(out, x[:, column], out=out)
    return out


def true_peak_dbtp(samples: np.ndarray) -> float:
    """The true peak in dB relative to full scale (4× oversampled), or −inf for silence."""
    peaks = sample_peaks(samples)
    peak = float(peaks.max()) if len(peaks) else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def db_to_gain(db: float) -> float:
    return 10 ** (db / 20)
