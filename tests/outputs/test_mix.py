"""The rehearsal mix: loudness, the true-peak limiter, and where the lines sit.

Figures are measured here as BS.1770 says, independently of the mix's own report where that can
be done: loudness with pyloudnorm, the true peak from the signal oversampled 4× by
`scipy.signal.resample_poly`, the voice as the mix with the line minus the mix without it.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import butter, lfilter, resample_poly

from livekomp.outputs.limiter import Limiter
from livekomp.outputs.loudness import sample_peaks, true_peak_dbtp
from livekomp.outputs.render import MUSIC_FLOOR_LUFS, mix
from livekomp.speech import Speech

RATE = 48_000
CEILING = 10 ** (-1 / 20)  # −1 dBTP


def lufs(samples: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(np.asarray(samples, np.float64))


def true_peak(samples: np.ndarray) -> float:
    """The largest magnitude of the signal oversampled 4× (linear)."""
    return float(np.max(np.abs(resample_poly(samples, 4, 1, axis=0))))


def music(seconds: float, sections: list[float], seed: int = 0) -> np.ndarray:
    """(frames, 2) a chord and a kick-and-noise groove, each section at its own level (dB):
    a stand-in for a set that starts quiet and gets loud, with drum peaks on top."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (110, 220, 277, 330, 440))
    hits = np.zeros_like(t)
    for beat_s in np.arange(0, seconds, 0.5):
        start = round(beat_s * RATE)
        n = min(len(t) - start, RATE // 5)
        decay = np.exp(-np.arange(n) / RATE / 0.03)
        hits[start : start + n] += (np.sin(2 * np.pi * 60 * np.arange(n) / RATE) * 3) * decay
        hits[start : start + n] += rng.standard_normal(n) * decay * 1.5
    mono = 0.05 * chord + 0.1 * hits
    level = np.repeat(10 ** (np.array(sections) / 20), math.ceil(len(t) / len(sections)))
    mono *= level[: len(t)]
    return np.stack([mono, np.roll(mono, 7)], axis=1).astype(np.float32)


def speech(seconds: float, peak: float = 0.9, seed: int = 1) -> Speech:
    """Speech-band noise in syllables (4 a second) with a pause, its peak at `peak`: what a
    voice hands over (levelled by its peak, not by its loudness)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    b, a = butter(2, [300 / (RATE / 2), 3400 / (RATE / 2)], "band")
    voiced = lfilter(b, a, rng.standard_normal(len(t)))
    envelope = np.sin(np.pi * 4 * t + 0.3) ** 2 * ((np.abs(t - seconds / 2) > 0.2) | (seconds < 1))
    samples = voiced * envelope
    return Speech((samples * peak / np.max(np.abs(samples))).astype(np.float32), RATE, "test")


def inter_sample_test_signal(seconds: float = 2.0) -> np.ndarray:
    """(frames, 2) tones at a quarter of the sample rate, sampled 45° off their crests, so the
    samples miss the peaks by 3 dB, on a loud low tone: far over full scale between samples."""
    t = np.arange(round(seconds * RATE)) / RATE
    high = np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4)
    low = np.sin(2 * np.pi * 97 * t)
    return np.stack([1.2 * high + 0.3 * low, 0.9 * high - 0.2 * low], axis=1)


def test_the_limiter_keeps_inter_sample_peaks_under_minus_1_dbtp():
    loud = inter_sample_test_signal()
    assert true_peak(loud) / np.max(np.abs(loud)) > 10 ** (1.5 / 20)  # peaks between samples
    assert true_peak(loud) > 1.5  # and far over full scale
    out = Limiter().apply(loud, RATE)
    assert true_peak(out) <= CEILING
    # A limiter that only looked at the samples would have let the inter-sample peaks through.
    assert np.max(np.abs(out)) < CEILING / 10 ** (1.5 / 20)


def test_the_limiter_turns_the_gain_down_smoothly_ahead_of_a_peak_and_lets_it_go():
    t = np.arange(RATE * 2) / RATE
    quiet = 0.2 * np.sin(2 * np.pi * 440 * t)
    signal = np.stack([quiet, quiet], axis=1)
    spike = RATE // 2
    signal[spike : spike + 48] += 3.0 * np.hanning(48)[:, None]  # a hit far over the ceiling
    gain = Limiter().gain(signal, RATE)
    assert true_peak(signal * gain[:, None]) <= CEILING
    assert gain[spike - RATE // 1000] < 1.0  # already on its way down a millisecond before
    assert np.all(gain[: spike - RATE // 100] == 1.0)  # untouched before the lookahead
    assert np.all(gain[spike + RATE // 2 :] == 1.0)  # released: 14 dB at 30 dB/s
    assert np.max(np.abs(np.diff(gain))) < 0.02  # a gain curve, not a clipper's edge
    out = Limiter().apply(signal, RATE)
    np.testing.assert_array_equal(out, signal * gain[:, None])  # both channels the same gain


def test_a_quiet_signal_passes_the_limiter_unchanged():
    quiet = inter_sample_test_signal() * 0.3
    assert true_peak(quiet) < CEILING
    out = Limiter().apply(quiet, RATE)
    np.testing.assert_array_equal(out, quiet)


def test_sample_peaks_see_between_the_samples_and_match_the_whole_signal_oversampled():
    rng = np.random.default_rng(5)
    x = lfilter(*butter(4, 0.9), rng.standard_normal((30_000, 2)), axis=0)  # crosses chunks
    up = np.abs(resample_poly(x, 4, 1, axis=0)).max(axis=1).reshape(-1, 4).max(axis=1)
    expected = np.maximum(up, np.abs(x).max(axis=1))
    np.testing.assert_allclose(sample_peaks(x), expected, rtol=1e-9)
    assert true_peak_dbtp(x) > 20 * np.log10(np.max(np.abs(x))) + 0.1


@pytest.mark.parametrize("level_db", [-40.0, -20.0, 6.0], ids=["quiet", "moderate", "hot"])
def test_the_mix_is_normalised_to_minus_16_lufs_under_minus_1_dbtp(level_db):
    source = music(12.0, [level_db - 10, level_db, level_db + 4])
    out = mix(source, [])
    assert lufs(out.samples) == pytest.approx(-16.0, abs=1.0)
    assert true_peak(out.samples) <= CEILING
    assert out.integrated_lufs == pytest.approx(lufs(out.samples), abs=0.01)
    assert out.true_peak_dbtp == pytest.approx(20 * math.log10(true_peak(out.samples)), abs=0.01)


def test_music_with_headroom_only_changes_level():
    t = np.arange(RATE * 6) / RATE
    tone = 0.01 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    source = np.stack([tone, tone], axis=1).astype(np.float32)
    out = mix(source, []).samples
    assert lufs(out) == pytest.approx(-16.0, abs=1.0)
    scale = float(np.sum(out * source) / np.sum(source.astype(np.float64) ** 2))
    assert scale > 10  # turned up by ~25 dB …
    assert np.max(np.abs(out - scale * source)) <= 0.6 / 32767  # … and otherwise unchanged


def test_lines_sit_0_to_4_lu_over_the_music_under_them():
    source = music(24.0, [-22.0, -22.0, -10.0, -10.0])  # quiet for 12 s, then 12 dB louder
    lines = [
        (1.0, speech(2.5, peak=0.9, seed=1)),  # over the quiet part, as loud as a voice gives
        (6.0, speech(2.0, peak=0.02, seed=2)),  # over the quiet part, very soft
        (14.0, speech(3.0, peak=0.9, seed=3)),  # over the loud part
        (19.5, speech(0.3, peak=0.5, seed=4)),  # a word, shorter than a gating block
    ]
    with_lines = mix(source, lines)
    assert lufs(with_lines.samples) == pytest.approx(-16.0, abs=1.0)
    assert true_peak(with_lines.samples) <= CEILING
    for level in with_lines.lines:
        assert 0.0 <= level.lu_over_music <= 4.0
        assert level.lu_over_music == pytest.approx(2.0, abs=0.5)
        assert not level.floored
    # Measured without the mix's help over the quiet part, where the limiter has nothing to
    # do: the voice is the mix with the lines less the music alone, mixed the same way. The
    # lines over the loud part made the whole louder, so the mix turned everything down a
    # little: the music alone is scaled to match, as the samples between the lines show.
    without = mix(source, [])
    scale = 10 ** ((with_lines.music_gain_db - without.music_gain_db) / 20)
    music_alone = without.samples * scale
    between = slice(4 * RATE, 6 * RATE)
    assert np.max(np.abs(with_lines.samples[between] - music_alone[between])) < 2 / 32767
    for start_s, line in lines[:2]:
        span = slice(round(start_s * RATE), round(start_s * RATE) + len(line.samples))
        voice = with_lines.samples[span] - music_alone[span]
        assert 0.0 <= lufs(voice) - lufs(music_alone[span]) <= 4.0


def test_a_line_leaves_the_music_away_from_it_alone():
    source = music(20.0, [-20.0, -12.0])
    line = speech(2.0, seed=7)
    with_line = mix(source, [(9.0, line)]).samples  # the line adds a little loudness …
    without = mix(source, []).samples  # … but not enough to move the whole's gain
    start, end = 9 * RATE, 9 * RATE + len(line.samples)
    np.testing.assert_array_equal(with_line[: start - RATE // 100], without[: start - RATE // 100])
    np.testing.assert_array_equal(with_line[end + RATE :], without[end + RATE :])
    assert np.max(np.abs(with_line[start:end] - without[start:end])) > 0.05


def test_a_line_over_near_silence_is_spoken_up_to_the_floor():
    source = music(16.0, [-15.0, -90.0, -15.0, -15.0])  # a rest from 4 s to 8 s
    line = speech(2.0, peak=0.9, seed=8)
    out = mix(source, [(5.0, line)])
    [level] = out.lines
    assert level.floored
    assert level.line_lufs == pytest.approx(MUSIC_FLOOR_LUFS + 2.0, abs=0.5)
    assert lufs(out.samples) == pytest.approx(-16.0, abs=1.0)


def test_lines_with_no_music_at_all_are_the_whole_and_brought_to_minus_16():
    silence = np.zeros((RATE * 8, 2), np.float32)
    out = mix(silence, [(1.0, speech(2.0, peak=0.1, seed=9)), (4.5, speech(2.5, seed=10))])
    assert lufs(out.samples) == pytest.approx(-16.0, abs=1.0)
    assert true_peak(out.samples) <= CEILING
    assert all(level.floored for level in out.lines)
    loudness = [level.line_lufs for level in out.lines]
    assert loudness[0] == pytest.approx(loudness[1], abs=0.5)  # both at the floor, raised alike


def test_silence_stays_silence():
    out = mix(np.zeros((RATE, 2), np.float32), [])
    assert not out.samples.any()
    assert out.integrated_lufs is None and out.true_peak_dbtp is None


def test_the_mix_is_deterministic():
    source = music(10.0, [-25.0, -5.0])
    lines = [(2.0, speech(2.0, seed=11)), (6.0, speech(2.5, seed=12))]
    a, b = mix(source, lines), mix(source.copy(), list(lines))
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.figures() == b.figures()


def test_speech_at_another_rate_is_refused():
    with pytest.raises(ValueError, match="mix rate"):
        mix(music(2.0, [-20.0]), [(0.0, Speech(np.zeros(100, np.float32), 22_050, "test"))])
