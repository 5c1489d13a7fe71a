"""Rehearsal audio: a `.mid` rendered to sound, spoken lines mixed in, written as a WAV.

The MIDI goes through fluidsynth with a General MIDI SoundFont when both are there (Debian's
`fluidsynth` and `timgm6mb-soundfont`), else through a small built-in synth: a sine e-piano, a
soft pad, a round bass and noise drums — enough to hear the harmony, the groove and where the
lines fall. Both are deterministic, so a rehearsal's WAV is the same for the same seed.
"""

from __future__ import annotations

import io
import logging
import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from livekomp.files import write_atomically
from livekomp.outputs.limiter import Limiter, reduction_db
from livekomp.outputs.loudness import (
    BLOCK_S,
    CONTEXT_FRAMES,
    db_to_gain,
    integrated_lufs,
    sample_peaks,
    true_peak_dbtp,
)
from livekomp.speech import Speech
from livekomp.voice.tts import resample

log = logging.getLogger("livekomp.render")

SAMPLE_RATE = 48_000
SOUNDFONT_PLACES = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
# The mix (see `mix`): the music to TARGET_LUFS, each line LINE_OVER_MUSIC_LU over the music
# under it, the whole under the limiter's ceiling (−1 dBTP).
TARGET_LUFS = -16.0
TARGET_TOLERANCE_LU = 0.8  # inside the ±1 LU goal, with room for the meter's own spread
LINE_OVER_MUSIC_LU = 2.0
LINE_WINDOW_LU = (0.0, 4.0)
MUSIC_FLOOR_LUFS = -30.0
MASTER_LIMITER = Limiter()  # −1 dBTP
_LEVELLING_ROUNDS = 4  # the gains are set, the limiter has its say, the gains are set again …
_SETTLED_LU = 0.25  # a line (or a corrected whole) this close to where it should sit is left


def find_soundfont() -> Path | None:
    for place in SOUNDFONT_PLACES:
        if Path(place).is_file():
            return Path(place)
    return None


def render_fluidsynth(
    midi_path: Path, soundfont: Path, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """(frames, 2) float samples of `midi_path` played by fluidsynth with `soundfont`."""
    command = shutil.which("fluidsynth")
    if command is None:
        raise FileNotFoundError("fluidsynth is not installed (Debian: apt-get install fluidsynth)")
    with tempfile.TemporaryDirectory(prefix="livekomp-") as tmp:
        out = Path(tmp) / "music.wav"
        args = [command, "-ni", "-q", "-F", str(out), "-r", str(sample_rate), "-T", "wav"]
        args += ["-O", "s16", "-g", "0.5", str(soundfont), str(midi_path)]
        result = subprocess.run(args, capture_output=True, timeout=600)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"fluidsynth failed: {result.stderr.decode(errors='replace').strip()[:300]}"
            )
        return read_wav(out, sample_rate)


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        data = wav.readframes(wav.getnframes())
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit samples")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32).reshape(-1, channels) / 32768.0
    if channels == 1:
        samples = np.repeat(samples, 2, axis=1)
    if rate != sample_rate:
        samples = np.stack([resample(samples[:, c], rate, sample_rate) for c in (0, 1)], axis=1)
    return samples[:, :2]


# The built-in synth: per channel, harmonics (amplitude of each partial), decay time, attack
# time and pan; drums by key. A table, so a part's sound is changed in one place.
@dataclass(frozen=True, slots=True)
class Tone:
    partials: tuple[float, ...]
    decay_s: float
    attack_s: float
    pan: float  # -1 left … 1 right
    gain: float


TONES: dict[int, Tone] = {
    0: Tone((1.0, 0.35, 0.12, 0.05), decay_s=0.9, attack_s=0.004, pan=0.2, gain=0.30),  # melody
    1: Tone((1.0, 0.5, 0.33, 0.25, 0.2), decay_s=3.0, attack_s=0.08, pan=-0.3, gain=0.10),  # chords
    2: Tone((1.0, 0.25), decay_s=1.2, attack_s=0.006, pan=0.0, gain=0.32),  # bass
}
DEFAULT_TONE = Tone((1.0, 0.3), decay_s=1.0, attack_s=0.01, pan=0.0, gain=0.2)
DRUM_CHANNEL = 9
# key → (kind, length_s, gain): kick a falling sine, the rest filtered noise.
DRUMS: dict[int, tuple[str, float, float]] = {
    35: ("kick", 0.35, 0.6),
    36: ("kick", 0.35, 0.6),
    38: ("snare", 0.2, 0.35),
    40: ("snare", 0.2, 0.35),
    37: ("click", 0.05, 0.25),
    39: ("snare", 0.25, 0.3),
    42: ("hat", 0.05, 0.15),
    44: ("hat", 0.05, 0.12),
    46: ("hat", 0.25, 0.15),
    49: ("hat", 1.0, 0.15),
    51: ("hat", 0.6, 0.1),
}


@dataclass(frozen=True, slots=True)
class _Note:
    channel: int
    pitch: int
    velocity: int
    start_s: float
    end_s: float


def _notes(midi_path: Path) -> list[_Note]:
    """Every note of the file with its times in seconds (mido follows the tempo map)."""
    notes: list[_Note] = []
    sounding: dict[tuple[int, int], tuple[float, int]] = {}
    now = 0.0
    for message in mido.MidiFile(midi_path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            sounding[(message.channel, message.note)] = (now, message.velocity)
        elif message.type in ("note_on", "note_off"):
            started = sounding.pop((message.channel, message.note), None)
            if started is not None:
                notes.append(_Note(message.channel, message.note, started[1], started[0], now))
    return notes


def _drum(kind: str, length_s: float, rng: np.random.Generator, rate: int) -> np.ndarray:
    t = np.arange(round(length_s * rate)) / rate
    if kind == "kick":
        phase = 2 * np.pi * (45 * t + 60 * (1 - np.exp(-t * 30)) / 30)
        return np.sin(phase) * np.exp(-t / 0.12)
    noise = rng.standard_normal(len(t))
    if kind == "hat":
        noise = np.diff(noise, prepend=0.0)  # tilt towards the highs
        return noise * np.exp(-t / (length_s / 4)) * 0.5
    if kind == "click":
        return noise * np.exp(-t / 0.01)
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    return (0.6 * noise * np.exp(-t / 0.06) + body) * 0.7


def render_builtin(midi_path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames, 2) float samples of `midi_path` through the built-in synth."""
    notes = _notes(midi_path)
    end_s = max((n.end_s for n in notes), default=0.0) + 3.0
    out = np.zeros((round(end_s * sample_rate), 2), np.float32)
    rng = np.random.default_rng(0)  # same noise every time: deterministic drums
    for note in notes:
        start = round(note.start_s * sample_rate)
        level = note.velocity / 127
        if note.channel == DRUM_CHANNEL:
            kind, length_s, gain = DRUMS.get(note.pitch, ("click", 0.05, 0.15))
            sound = _drum(kind, length_s, rng, sample_rate) * gain * level
            pan = 0.0
        else:
            tone = TONES.get(note.channel, DEFAULT_TONE)
            held_s = max(0.02, note.end_s - note.start_s)
            length = round((held_s + 0.15) * sample_rate)
            t = np.arange(length) / sample_rate
            freq = 440.0 * 2 ** ((note.pitch - 69) / 12)
            wave_ = sum(
                a * np.sin(2 * np.pi * freq * (k + 1) * t)
                for k, a in enumerate(tone.partials)
                if freq * (k + 1) < sample_rate / 2.2
            )
            envelope = np.minimum(1.0, t / tone.attack_s) * np.exp(-t / tone.decay_s)
            envelope *= np.clip((held_s + 0.15 - t) / 0.15, 0.0, 1.0)  # release after note-off
            sound = wave_ * envelope * tone.gain * level
            pan = tone.pan
        sound = sound[: max(0, len(out) - start)].astype(np.float32)
        out[start : start + len(sound), 0] += sound * (1 - pan) / 2**0.5
        out[start : start + len(sound), 1] += sound * (1 + pan) / 2**0.5
    return out


@dataclass(frozen=True, slots=True)
class MusicSource:
    """Which synth played the music: fluidsynth with `soundfont`, or the built-in synth (and,
    where the built-in synth stood in for fluidsynth, why)."""

    synth: str  # "fluidsynth" or "builtin"
    soundfont: Path | None = None
    fallback: str | None = None

    @property
    def name(self) -> str:
        """The summary's short form: "fluidsynth:NAME.sf2" or "builtin"."""
        return f"fluidsynth:{self.soundfont.name}" if self.soundfont else "builtin"

    def describe(self) -> str:
        if self.soundfont is not None:
            return f"fluidsynth with {self.soundfont}"
        return "the built-in synth" + (f" ({self.fallback})" if self.fallback else "")


def render_music(
    midi_path: Path, soundfont: Path | None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, MusicSource]:
    """The music of `midi_path` and which synth made it."""
    if soundfont is not None and shutil.which("fluidsynth") is not None:
        try:
            samples = render_fluidsynth(midi_path, soundfont, sample_rate)
            return samples, MusicSource("fluidsynth", soundfont)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            log.warning("%s; the built-in synth plays instead", exc)
            fallback = str(exc)
    elif soundfont is not None:
        log.warning("fluidsynth is not installed; the built-in synth plays instead")
        fallback = "fluidsynth is not installed"
    else:
        fallback = None
    return render_builtin(midi_path, sample_rate), MusicSource("builtin", fallback=fallback)


@dataclass(frozen=True, slots=True)
class LineLevel:
    """One line in the mix, measured in the file as written (after the limiter): its loudness,
    the music's over the same span, and the difference. None: silence, no figure."""

    start_s: float
    line_lufs: float | None
    music_lufs: float | None
    lu_over_music: float | None
    floored: bool  # the music under it was below MUSIC_FLOOR_LUFS: the line sits on the floor


@dataclass(frozen=True, slots=True)
class Mix:
    samples: np.ndarray  # (frames, 2) float, on the 16-bit grid the WAV stores
    integrated_lufs: float | None
    true_peak_dbtp: float | None
    music_gain_db: float
    limiter_db: float  # the most the limiter turned the mix down
    lines: tuple[LineLevel, ...]

    def figures(self) -> dict[str, object]:
        """The measured figures, for summary.json."""
        over = [line.lu_over_music for line in self.lines if line.lu_over_music is not None]
        return {
            "integrated_lufs": _round(self.integrated_lufs),
            "true_peak_dbtp": _round(self.true_peak_dbtp),
            "music_gain_db": _round(self.music_gain_db),
            "limiter_max_db": _round(self.limiter_db),
            "line_lu_over_music": {
                "min": _round(min(over)) if over else None,
                "max": _round(max(over)) if over else None,
                "floored": sum(line.floored for line in self.lines),
            },
            "lines": [
                {
                    "start_s": round(line.start_s, 6),
                    "lufs": _round(line.line_lufs),
                    "music_lufs": _round(line.music_lufs),
                    "lu_over_music": _round(line.lu_over_music),
                }
                for line in self.lines
            ],
        }

    def describe(self) -> str:
        """For people: "-16.0 LUFS, -1.1 dBTP, lines +1.9…+2.1 LU over the music"."""
        if self.integrated_lufs is None or self.true_peak_dbtp is None:
            return "silent"
        text = f"{self.integrated_lufs:.1f} LUFS, {self.true_peak_dbtp:.1f} dBTP"
        over = [line.lu_over_music for line in self.lines if line.lu_over_music is not None]
        if over:
            text += f", lines {min(over):+.1f}…{max(over):+.1f} LU over the music"
        floored = sum(line.floored for line in self.lines)
        if floored:
            text += f" ({floored} over near-silence, at the floor)"
        return text


def mix(
    music: np.ndarray,
    lines: list[tuple[float, Speech]],
    *,
    sample_rate: int = SAMPLE_RATE,
    voice_level_db: float = 0.0,
    limiter: Limiter = MASTER_LIMITER,
) -> Mix:
    """Music and each (start_s, speech) line, centred, levelled for loudness and limited.

    The music is brought to TARGET_LUFS integrated (ITU-R BS.1770), with the limiter's effect
    counted, from the music alone: so a line does not change the gain of the music around it,
    and the same set with and without a line differs only under the line and for the limiter's
    release after it. Each line is then set LINE_OVER_MUSIC_LU (2 LU, plus `voice_level_db`)
    over the music's loudness across the line's own span, both measured as they come out of
    the limiter (its gain dips under a loud word, taking the voice down more than the music),
    in a few rounds.

    The window is 0–4 LU: under 0 the music, which fills the same range of the spectrum,
    covers the words; much more than 4 and the line stops sitting in the music and sounds
    pasted over it (a fresh clone had the voice 10–13 dB over quiet music). 2 LU is the middle
    of it, which leaves room for what a gain set from averages over a few seconds cannot see:
    a crash under a word, the limiter taking a peak. Music quieter than MUSIC_FLOOR_LUFS under
    a line (a rest, a fade) counts as the floor, so a line over near-silence is still spoken up
    (and is reported as floored).

    Lines add loudness of their own; where they are so many, so long or over such loud music
    that the whole misses the target by more than TARGET_TOLERANCE_LU, the whole mix, music
    included, is brought back to it (a set with no music at all is its lines, brought to the
    target). Last, the limiter keeps the true peak (4× oversampled) at or under its ceiling,
    −1 dBTP.
    """
    end = len(music)
    for start_s, speech in lines:
        if speech.sample_rate != sample_rate:
            raise ValueError("speech must be rendered at the mix rate")
        end = max(end, max(0, round(start_s * sample_rate)) + len(speech.samples))
    music_stem = np.zeros((end, 2))
    music_stem[: len(music)] = music
    music_peaks = sample_peaks(music_stem)
    music_gain_db = _music_gain_db(music_stem, music_peaks, sample_rate, limiter)
    music_stem *= db_to_gain(music_gain_db)
    music_peaks *= db_to_gain(music_gain_db)

    placed = [_Line.place(start_s, speech, sample_rate) for start_s, speech in lines]
    under_lines = np.zeros(end, bool)  # where the peaks of the whole differ from the music's
    for line in placed:
        under_lines[max(0, line.start - CONTEXT_FRAMES) : line.end + CONTEXT_FRAMES] = True
        reference = max(_span_lufs(music_stem, line.start, line.end, sample_rate), MUSIC_FLOOR_LUFS)
        if math.isfinite(line.own_lufs):  # a first guess, before the limiter has its say
            line.gain_db = reference + LINE_OVER_MUSIC_LU + voice_level_db - line.own_lufs

    def settle(correction_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Set the lines' gains until each sits where it should after the limiter (a few
        rounds); returns the whole, its true peaks and the limiter's gain for it."""
        for round_ in range(_LEVELLING_ROUNDS):
            whole = music_stem * db_to_gain(correction_db)
            for line in placed:
                voice = line.voice * db_to_gain(line.gain_db + correction_db)
                whole[line.start : line.end] += voice
            peaks = music_peaks * db_to_gain(correction_db)
            if placed:
                peaks[under_lines] = sample_peaks(whole, only=under_lines)[under_lines]
            gain = limiter.envelope(peaks, sample_rate)
            if round_ == _LEVELLING_ROUNDS - 1:
                break
            levels = _measure(placed, music_stem, gain, correction_db, sample_rate)
            misses = [_line_miss_lu(level, voice_level_db, correction_db) for level in levels]
            if all(abs(miss) <= _SETTLED_LU for miss in misses):
                break
            for line, miss in zip(placed, misses, strict=True):
                line.gain_db += miss
        return whole, peaks, gain

    correction_db = 0.0
    whole, peaks, gain = settle(correction_db)
    tolerance = TARGET_TOLERANCE_LU
    for _ in range(_LEVELLING_ROUNDS):
        miss = TARGET_LUFS - integrated_lufs(whole * gain[:, None], sample_rate)
        if not math.isfinite(miss) or abs(miss) <= tolerance:
            break
        correction_db += miss  # the lines made the whole too loud, or there is only voice
        tolerance = _SETTLED_LU
        whole, peaks, gain = settle(correction_db)
    checked = limiter.gain(whole, sample_rate, peaks)  # the envelope, checked for true peaks
    levels = _measure(placed, music_stem, checked, correction_db, sample_rate)
    gain = checked
    out = _on_16_bit_grid(whole * gain[:, None])
    return Mix(
        out,
        _finite(integrated_lufs(out, sample_rate)),
        _finite(true_peak_dbtp(out)),
        music_gain_db + correction_db,
        reduction_db(gain),
        tuple(levels),
    )


def _music_gain_db(
    music: np.ndarray, peaks: np.ndarray, sample_rate: int, limiter: Limiter
) -> float:
    """The gain that brings `music` (true peaks `peaks`), limited, to TARGET_LUFS (0 dB for
    silence). The limiter takes a little loudness off loud music, so the gain is found in a
    few steps."""
    loudness = integrated_lufs(music, sample_rate)
    if not math.isfinite(loudness):
        return 0.0
    gain_db = TARGET_LUFS - loudness
    for _ in range(_LEVELLING_ROUNDS):
        scale = db_to_gain(gain_db)
        limited = music * (scale * limiter.envelope(peaks * scale, sample_rate))[:, None]
        miss = TARGET_LUFS - integrated_lufs(limited, sample_rate)
        if abs(miss) < 0.05:
            break
        gain_db += miss
    return gain_db


def _span(start: int, end: int, frames: int, sample_rate: int) -> tuple[int, int]:
    """The frames to measure the music under a line from: the line's own, widened about its
    middle to at least one 400 ms block (a word alone is too short to measure)."""
    block = round(BLOCK_S * sample_rate)
    if end - start < block:
        start = max(0, (start + end) // 2 - block // 2)
        end = start + block
    return start, min(end, frames)


def _span_lufs(samples: np.ndarray, start: int, end: int, sample_rate: int) -> float:
    lo, hi = _span(start, end, len(samples), sample_rate)
    return integrated_lufs(samples[lo:hi], sample_rate)


def _on_16_bit_grid(samples: np.ndarray) -> np.ndarray:
    """The samples as `write_wav` will store them, so the figures are the file's."""
    return np.round(np.clip(samples, -1.0, 1.0) * 32767) / 32767


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit stereo PCM, written whole or not at all."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    data = io.BytesIO()
    with wave.open(data, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    write_atomically(path, data.getvalue())


@dataclass(slots=True)
class _Line:
    """A line being placed: where it sits, its samples (centred) and the gain found so far."""

    start: int
    voice: np.ndarray  # (frames, 2)
    own_lufs: float
    gain_db: float = 0.0

    @property
    def end(self) -> int:
        return self.start + len(self.voice)

    @classmethod
    def place(cls, start_s: float, speech: Speech, sample_rate: int) -> _Line:
        voice = np.repeat(speech.samples.astype(np.float64)[:, None], 2, axis=1)
        return cls(max(0, round(start_s * sample_rate)), voice, integrated_lufs(voice, sample_rate))


def _measure(
    placed: list[_Line],
    music_stem: np.ndarray,
    gain: np.ndarray,
    correction_db: float,
    sample_rate: int,
) -> list[LineLevel]:
    """Each line and the music under it as the limiter leaves them (the same gain for both)."""
    levels = []
    for line in placed:
        span = slice(line.start, line.end)
        voice = line.voice * (db_to_gain(line.gain_db + correction_db) * gain[span, None])
        lo, hi = _span(line.start, line.end, len(music_stem), sample_rate)
        music = music_stem[lo:hi] * (db_to_gain(correction_db) * gain[lo:hi, None])
        line_lufs = integrated_lufs(voice, sample_rate)
        music_lufs = integrated_lufs(music, sample_rate)
        levels.append(
            LineLevel(
                line.start / sample_rate,
                _finite(line_lufs),
                _finite(music_lufs),
                _finite(line_lufs - music_lufs),
                music_lufs - correction_db < MUSIC_FLOOR_LUFS,
            )
        )
    return levels


def _line_miss_lu(level: LineLevel, voice_level_db: float, correction_db: float) -> float:
    """How far a line is from where it should sit: LINE_OVER_MUSIC_LU over the music under it,
    moved by `voice_level_db`. The floor is for the music before any correction of the whole:
    with no music at all the whole is the voice, and brought to the target. 0 for a silent
    line: nothing to set."""
    if level.line_lufs is None:
        return 0.0
    music = level.music_lufs if level.music_lufs is not None else -math.inf
    reference = max(music, MUSIC_FLOOR_LUFS + correction_db)
    return reference + LINE_OVER_MUSIC_LU + voice_level_db - level.line_lufs
