"""Real synthesis: piper and espeak-ng speak, their delivery follows the prosody, the fallback
speaks when the chosen voice cannot, and bad text is refused without harm."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from livekomp.voice.prosody import PROSODY_GRID, Prosody, prosody_for
from livekomp.voice.text import BadText, clean_line
from livekomp.voice.tts import (
    OUTPUT_RATE,
    Speaker,
    TtsError,
    VoiceSpec,
    finish,
    open_speaker,
    resample,
)

SHORT = "And then, the sun."
LONG = "Before the light, there is only the long night, and the long night is cold and still."
NEUTRAL = Prosody()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_a_line_is_sound_whose_length_fits_the_text(speaker):
    short = speaker.speak(clean_line(SHORT), NEUTRAL)
    long = speaker.speak(clean_line(LONG), NEUTRAL)
    for speech, text in ((short, SHORT), (long, LONG)):
        assert speech.sample_rate == OUTPUT_RATE
        assert rms(speech.samples) > 0.03  # not silence
        # Natural speech runs at roughly 10-20 characters a second.
        assert 0.03 < speech.duration_s / len(text) < 0.12, speech.duration_s
        # Trimmed: the line is loud from its first few milliseconds.
        head = speech.samples[: round(0.03 * OUTPUT_RATE)]
        assert np.max(np.abs(head)) > 0.02
    assert long.duration_s > 3 * short.duration_s


def test_a_slower_rate_speaks_longer_and_volume_sets_the_level(speaker):
    slow = speaker.speak(clean_line(LONG), Prosody(rate=0.7, volume=0.8))
    fast = speaker.speak(clean_line(LONG), Prosody(rate=1.3, volume=0.8))
    assert 1.4 < slow.duration_s / fast.duration_s < 2.4  # 1.3 / 0.7 = 1.86
    soft = speaker.speak(clean_line(SHORT), Prosody(volume=0.3))
    loud = speaker.speak(clean_line(SHORT), Prosody(volume=0.9))
    assert np.max(np.abs(loud.samples)) == pytest.approx(0.9, abs=0.05)
    assert np.max(np.abs(soft.samples)) == pytest.approx(0.3, abs=0.05)
    assert rms(loud.samples) > 2.0 * rms(soft.samples)


def median_f0(samples: np.ndarray, rate: int) -> float:
    """Median fundamental of the voiced frames, by autocorrelation (60-400 Hz)."""
    frame = round(0.04 * rate)
    lags = np.arange(rate // 400, rate // 60)
    f0s = []
    for start in range(0, len(samples) - frame, frame):
        x = samples[start : start + frame].astype(np.float64)
        if rms(x) < 0.05:
            continue
        x = x - x.mean()
        corr = np.array([np.dot(x[:-lag], x[lag:]) for lag in lags])
        best = int(np.argmax(corr))
        if corr[best] > 0.5 * np.dot(x, x):
            f0s.append(rate / lags[best])
    assert len(f0s) > 5
    return float(np.median(f0s))


def test_espeak_pitch_follows_the_prosody(espeak):
    speaker = Speaker([espeak], sample_rate=16_000)
    low = speaker.speak(clean_line(LONG), Prosody(pitch_st=-4.0))
    high = speaker.speak(clean_line(LONG), Prosody(pitch_st=4.0))
    assert median_f0(high.samples, 16_000) > 1.15 * median_f0(low.samples, 16_000)


def test_the_table_makes_grief_slow_and_soft_and_joy_quick_and_bright():
    grief, joy = prosody_for(-0.8, -0.5), prosody_for(0.8, 0.5)
    assert grief.rate < 1.0 < joy.rate
    assert grief.volume < joy.volume
    assert grief.pitch_st < 0 < joy.pitch_st
    assert grief.liveliness < joy.liveliness
    # The grid points are the table, exactly; between them it is interpolated.
    for (v, a), prosody in PROSODY_GRID.items():
        assert prosody_for(v, a) == prosody.rounded()
    mid = prosody_for(0.5, 0.0)
    assert PROSODY_GRID[(0, 0)].rate < mid.rate < PROSODY_GRID[(1, 0)].rate


def test_piper_delivery_follows_the_mood(piper):
    speaker = Speaker([piper])
    grief = speaker.speak(clean_line(LONG), prosody_for(-0.9, -0.8))
    joy = speaker.speak(clean_line(LONG), prosody_for(0.9, 0.8))
    # rate 0.81 vs 1.16; the voice's own duration noise (scaled by liveliness) blurs the ratio
    assert grief.duration_s > 1.1 * joy.duration_s
    assert rms(grief.samples) < rms(joy.samples)


def test_the_cache_returns_the_rendering_for_the_same_text_voice_and_prosody(piper):
    speaker = Speaker([piper])
    first = speaker.speak(clean_line(SHORT), NEUTRAL)
    again = speaker.speak(clean_line(SHORT), NEUTRAL)
    other = speaker.speak(clean_line(SHORT), Prosody(rate=1.2))
    assert not first.cached and again.cached and not other.cached
    assert np.array_equal(first.samples, again.samples)
    assert speaker.cache_hits == 1 and speaker.renders == {"piper": 2}


def test_a_missing_default_voice_falls_back_to_espeak_with_one_log_line(espeak, tmp_path, caplog):
    spec = VoiceSpec("piper", "espeak-ng", model_path=str(tmp_path / "nowhere.onnx"))
    with caplog.at_level(logging.WARNING, logger="livekomp.voice"):
        speaker = open_speaker(spec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "piper unavailable" in warnings[0] and "espeak-ng speaks instead" in warnings[0]
    speech = speaker.speak(clean_line(SHORT), NEUTRAL)
    assert speech.backend == "espeak-ng" and rms(speech.samples) > 0.03


class BrokenVoice:
    """A backend that loads but fails on every line (a corrupt model, a crashed runtime)."""

    name = "piper"
    voice = "broken"

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        raise RuntimeError("onnxruntime exploded")


def test_a_voice_failing_on_a_line_hands_it_to_the_fallback(espeak, caplog):
    speaker = Speaker([BrokenVoice(), espeak])
    with caplog.at_level(logging.WARNING, logger="livekomp.voice"):
        speech = speaker.speak(clean_line(SHORT), NEUTRAL)
    assert speech.backend == "espeak-ng"
    assert speaker.failures == {"piper": 1}
    assert any("espeak-ng speaks it" in r.getMessage() for r in caplog.records)
    with pytest.raises(TtsError, match="onnxruntime exploded"):
        Speaker([BrokenVoice()]).speak(clean_line(SHORT), NEUTRAL)


def test_coqui_without_its_package_is_a_clear_error(caplog):
    with caplog.at_level(logging.WARNING, logger="livekomp.voice"):
        speaker = open_speaker(VoiceSpec("coqui", None, "model.pth", "config.json"))
    assert not speaker.available
    assert any("coqui unavailable" in r.getMessage() for r in caplog.records)
    with pytest.raises(TtsError):
        speaker.speak(["Hello."], NEUTRAL)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello\x00 world\x07!", ["Hello world !"]),
        ("  spaced\t\nout  ", ["spaced out"]),
        ("say [[ h ə l oʊ ]] this", ["say this"]),
        ("<speak>tagged</speak>", ["tagged"]),
        ("One. Two! Three?", ["One.", "Two!", "Three?"]),
        ("\u202eright\u200b-to-left", ["right -to-left"]),
    ],
)
def test_text_is_cleaned(text, expected):
    assert clean_line(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "...!!!", "[[ ]]", None, 42])
def test_text_with_nothing_to_say_is_refused(text):
    with pytest.raises(BadText):
        clean_line(text)


def test_very_long_text_is_cut_into_sentences_of_bounded_length():
    sentences = clean_line("word " * 2000)
    assert 1 < len(sentences) <= 8
    assert all(len(s) <= 160 for s in sentences)
    assert sum(len(s) for s in sentences) <= 600
    many = clean_line(" ".join(f"Line {i}." for i in range(100)))
    assert many[:2] == ["Line 0.", "Line 1."] and len(many) == 8


def test_long_text_is_spoken_sentence_by_sentence(espeak):
    speaker = Speaker([espeak])
    one = speaker.speak(clean_line("The first sentence is here."), NEUTRAL)
    two = speaker.speak(
        clean_line("The first sentence is here. And a second one follows."), NEUTRAL
    )
    assert two.duration_s > 1.6 * one.duration_s


def test_finish_trims_levels_and_resamples():
    rate = 22_050
    t = np.arange(rate) / rate
    tone = np.where((t > 0.25) & (t < 0.75), 0.3 * np.sin(2 * np.pi * 220 * t), 0.0)
    out = finish(tone, rate, volume=0.5, out_rate=OUTPUT_RATE)
    assert len(out) / OUTPUT_RATE == pytest.approx(0.5, abs=0.01)  # silence trimmed
    assert np.max(np.abs(out)) == pytest.approx(0.5, abs=0.01)
    with pytest.raises(TtsError):
        finish(np.zeros(1000), rate, volume=0.5, out_rate=OUTPUT_RATE)
    up = resample(np.sin(2 * np.pi * 440 * t[:2205]).astype(np.float32), rate, OUTPUT_RATE)
    assert len(up) == 4800


def test_voice_none_means_no_voice_even_with_a_fallback_set():
    speaker = open_speaker(VoiceSpec("none", "espeak-ng"))
    assert not speaker.available
    with pytest.raises(TtsError):
        speaker.speak(["Hello."], NEUTRAL)
