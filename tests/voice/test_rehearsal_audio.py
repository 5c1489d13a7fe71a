"""`rehearse --audio`: set.wav has the music and the spoken lines at their bar lines.

Where a line is, is measured in the audio itself: the same set rendered without the line (same
seed, so the same music) is subtracted, and what is left is the voice.
"""

from __future__ import annotations

import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from livekomp.cli import main
from livekomp.inputs.setlist import load_setlist, parse_setlist
from livekomp.outputs.render import find_soundfont
from livekomp.rehearsal import AudioOptions, rehearse
from livekomp.voice.lines import load_responses
from livekomp.voice.tts import VoiceSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RATE = 48_000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2).astype(np.float32) / 32768


def onset_s(samples: np.ndarray, threshold: float = 0.01) -> float:
    loud = np.flatnonzero(np.abs(samples[:, 0]) > threshold)
    assert len(loud), "no sound"
    return loud[0] / RATE


def setlist(cues, bpm=100, bars=12, name="voice"):
    data = {"bpm": bpm, "bars": bars, "key": "A", "cue": cues}
    return parse_setlist(data, Path(f"{name}.toml"))


BASE_CUES = [{"bar": 0, "mood": "calm"}, {"bar": 6, "valence": 0.6}]


@pytest.mark.parametrize("builtin", [False, True], ids=["fluidsynth", "builtin"])
def test_a_line_cued_at_bar_8_starts_in_the_wav_on_bar_8(tmp_path, builtin):
    if not builtin and shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth is not installed")
    options = AudioOptions(builtin_synth=builtin)
    with_line = setlist([*BASE_CUES, {"bar": 8, "say": "Here it comes."}])
    a = rehearse(with_line, tmp_path / "with", seed=3, audio=options)
    b = rehearse(setlist(BASE_CUES), tmp_path / "without", seed=3, audio=options)
    assert a.midi_path.read_bytes() == b.midi_path.read_bytes()  # the line changes no note
    mixed, music = read(a.wav_path), read(b.wav_path)
    assert np.sqrt(np.mean(music**2)) > 0.02  # the music is there
    voice = mixed[: len(music)] - music
    bar_8_s = 8 * 4 * 60 / 100
    # Outside the line the two mixes are the same samples, so the first difference (over two
    # 16-bit steps) is where the voice starts; it is plainly loud a few milliseconds later.
    assert abs(onset_s(voice, threshold=2 / 32768) - bar_8_s) < 0.010
    assert 0 <= onset_s(voice, threshold=0.01) - bar_8_s < 0.030
    [line] = a.summary["lines"]
    assert line["bar"] == 8 and line["backend"] == "piper" and line["cached"] is True
    played = a.summary["audio"]
    if builtin:
        assert played["music"] == "builtin" and played["soundfont"] is None
    else:
        assert played["soundfont"] == str(find_soundfont())
        assert played["music"] == f"fluidsynth:{find_soundfont().name}"
    assert line["start_s"] == pytest.approx(bar_8_s, abs=1e-6)
    heard_s = np.flatnonzero(np.abs(voice[:, 0]) > 0.01)
    assert heard_s[-1] / RATE == pytest.approx(bar_8_s + line["duration_s"], abs=0.05)


def test_a_line_after_a_tempo_change_lands_on_its_bar(tmp_path):
    cues = [{"bar": 0, "mood": "joy"}, {"bar": 4, "bpm": 150}, {"bar": 6, "say": "Faster now."}]
    result = rehearse(setlist(cues, bpm=90, bars=8), tmp_path, seed=1, audio=AudioOptions())
    [line] = result.summary["lines"]
    expected = 4 * 4 * 60 / 90 + 2 * 4 * 60 / 150
    assert line["start_s"] == pytest.approx(expected, abs=1e-6)


def test_the_example_set_speaks_its_lines_where_the_summary_says(tmp_path):
    sunrise = load_setlist(EXAMPLES / "sunrise.toml")
    spoken = rehearse(sunrise, tmp_path / "a", audio=AudioOptions())
    silent = rehearse(sunrise, tmp_path / "b", audio=AudioOptions(voice=VoiceSpec("none", None)))
    lines = spoken.summary["lines"]
    says = [c for c in sunrise.cues if any(e.param.value == "say" for e in c.events)]
    assert len(lines) == len(says) >= 3
    assert [line["bar"] for line in lines] == [c.bar for c in says]
    assert all(line["backend"] == "piper" and line["cached"] for line in lines)
    assert all(line.get("dropped") for line in silent.summary["lines"])
    voice = read(spoken.wav_path)[: len(read(silent.wav_path))] - read(silent.wav_path)
    inside = np.zeros(len(voice), bool)
    for line in lines:
        start = round(line["start_s"] * RATE)
        inside[start : start + round(line["duration_s"] * RATE) + 1] = True
        segment = voice[start : start + round(line["duration_s"] * RATE), 0]
        assert np.sqrt(np.mean(segment**2)) > 0.02  # heard where the summary says
        if start:
            assert np.max(np.abs(voice[max(0, start - RATE // 10) : start, 0])) < 0.01
    assert np.max(np.abs(voice[~inside])) < 0.01  # nothing spoken anywhere else
    # The mix: about -16 LUFS, under -1 dBTP, every line 0–4 LU over the music under it.
    figures = spoken.summary["audio"]["mix"]
    assert figures["integrated_lufs"] == pytest.approx(-16.0, abs=1.0)
    assert figures["true_peak_dbtp"] <= -1.0
    assert len(figures["lines"]) == len(lines)
    assert all(0.0 <= line["lu_over_music"] <= 4.0 for line in figures["lines"])


def test_same_seed_same_wav(tmp_path):
    cues = [*BASE_CUES, {"bar": 2, "say": "Once."}, {"bar": 8, "say": "And twice."}]
    a = rehearse(setlist(cues), tmp_path / "a", seed=4, audio=AudioOptions())
    b = rehearse(setlist(cues), tmp_path / "b", seed=4, audio=AudioOptions())
    assert a.wav_path.read_bytes() == b.wav_path.read_bytes()
    assert a.summary_path.read_bytes() == b.summary_path.read_bytes()


def test_bad_text_is_reported_and_the_next_line_is_spoken(tmp_path):
    cues = [{"bar": 1, "say": "\x07\x07 [[ ]]"}, {"bar": 3, "say": "Still here."}]
    result = rehearse(setlist(cues, bars=6), tmp_path, audio=AudioOptions())
    bad, good = result.summary["lines"]
    assert bad["dropped"].startswith("bad text")
    assert good["bar"] == 3 and good["backend"] == "piper"
    assert result.summary["audio"]["voice"]["lines"] == {"dropped": 1, "spoken": 1}


@needs_espeak
def test_the_fallback_speaks_when_the_default_voice_is_unavailable(tmp_path):
    spec = VoiceSpec("piper", "espeak-ng", model_path=str(tmp_path / "missing.onnx"))
    cues = [{"bar": 2, "say": "The fallback speaks."}]
    result = rehearse(setlist(cues, bars=4), tmp_path, audio=AudioOptions(voice=spec))
    [line] = result.summary["lines"]
    assert line["backend"] == "espeak-ng" and line["bar"] == 2
    voice = read(result.wav_path)
    start = round(line["start_s"] * RATE)
    assert np.sqrt(np.mean(voice[start : start + round(line["duration_s"] * RATE)] ** 2)) > 0.02


def test_lines_follow_each_other_and_beat_alignment_starts_sooner(tmp_path):
    cues = [
        {"bar": 2, "say": "A first line that takes a good while to say, longer than a bar."},
        {"bar": 2, "say": "Then this."},
    ]
    bars = rehearse(setlist(cues, bars=8), tmp_path / "bar", audio=AudioOptions())
    first, second = bars.summary["lines"]
    assert first["bar"] == 2
    assert second["start_s"] >= first["start_s"] + first["duration_s"]
    assert second["beat"] % 4 == 0  # the next bar line after the first line ends
    beats = rehearse(setlist(cues, bars=8), tmp_path / "beat", audio=AudioOptions(align="beat"))
    b_first, b_second = beats.summary["lines"]
    assert b_first["start_s"] == first["start_s"]
    assert b_second["beat"] == int(b_second["beat"])
    assert b_second["start_s"] < second["start_s"]


def test_ducking_softens_the_notes_under_a_line(tmp_path):
    cues = [{"bar": 0, "mood": "joy"}, {"bar": 4, "say": "Listen to me now, the band is quiet."}]
    plain = rehearse(setlist(cues, bars=8), tmp_path / "a", seed=2, audio=AudioOptions())
    ducked = rehearse(setlist(cues, bars=8), tmp_path / "b", seed=2, audio=AudioOptions(duck=0.5))
    import mido

    def velocities(path, bars):
        midi, out, tick = mido.MidiFile(path), [], 0
        for message in mido.merge_tracks(midi.tracks):
            tick += message.time
            bar = tick / midi.ticks_per_beat // 4
            if message.type == "note_on" and message.velocity and bar in bars:
                out.append(message.velocity)
        return out

    under = velocities(ducked.midi_path, {4}), velocities(plain.midi_path, {4})
    assert sum(under[0]) < 0.7 * sum(under[1])
    assert velocities(ducked.midi_path, {1, 2}) == velocities(plain.midi_path, {1, 2})


def test_responses_answer_mood_cues_from_the_lines_file(tmp_path):
    lines_file = tmp_path / "lines.toml"
    lines_file.write_text('[responses]\ngrief = ["So slow."]\njoy = ["So bright."]\n')
    cues = [{"bar": 1, "mood": "grief"}, {"bar": 4, "mood": "joy"}]
    options = AudioOptions(responses=load_responses(lines_file))
    result = rehearse(setlist(cues, bars=8), tmp_path / "out", audio=options)
    assert [(line["kind"], line["text"], line["bar"]) for line in result.summary["lines"]] == [
        ("response", "So slow.", 1),
        ("response", "So bright.", 4),
    ]


def test_cli_rehearse_audio_writes_set_wav(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["-q", "rehearse", str(EXAMPLES / "storm.toml"), "--out", str(out), "--audio"]
    assert main([*args, "--voice", "espeak-ng", "--builtin-synth"]) == 0
    [said] = [line for line in capsys.readouterr().out.splitlines() if "set.wav" in line]
    assert said.startswith(f"  {out / 'set.wav'}: music by the built-in synth; ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["audio"]["music"] == "builtin" and summary["audio"]["soundfont"] is None
    figures = summary["audio"]["mix"]
    over = figures["line_lu_over_music"]
    said_figures = re.search(r"(\S+) LUFS, (\S+) dBTP, lines (\S+)…(\S+) LU over the music", said)
    assert said_figures is not None, said
    reported = figures["integrated_lufs"], figures["true_peak_dbtp"], over["min"], over["max"]
    assert [float(x) for x in said_figures.groups()] == pytest.approx(reported, abs=0.051)
    assert figures["integrated_lufs"] == pytest.approx(-16.0, abs=1.0)
    assert figures["true_peak_dbtp"] <= -1.0
    assert 0.0 <= over["min"] <= over["max"] <= 4.0
    assert all(line["backend"] == "espeak-ng" for line in summary["lines"])
    assert len(read(out / "set.wav")) / RATE > 30


def test_cli_names_a_missing_soundfont(tmp_path, capsys):
    args = ["rehearse", str(EXAMPLES / "storm.toml"), "--out", str(tmp_path), "--audio"]
    assert main([*args, "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "none.sf2: no such SoundFont (--soundfont)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--voice-level-db", "40", "--voice-level-db: 40 is out of range (-60 … 12)"),
        ("--voice-level-db", "nan", "--voice-level-db: nan is out of range (-60 … 12)"),
        ("--duck", "1.5", "--duck: 1.5 is out of range (0 … 1)"),
    ],
)
def test_cli_names_an_audio_flag_out_of_range_and_writes_nothing(
    tmp_path, capsys, flag, value, said
):
    out = tmp_path / "out"
    args = ["rehearse", str(EXAMPLES / "storm.toml"), "--out", str(out), "--audio", flag, value]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"livekomp: error: {said}"]
    assert not out.exists()
