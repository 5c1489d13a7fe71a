"""Rehearsal audio: a `.mid` rendered to sound, spoken lines mixed in, written as a WAV.

The MIDI goes through fluidsynth with a General MIDI SoundFont when both are there (Debian's
`fluidsynth` and `timgm6mb-soundfont`), else through a small built-in synth: a sine e-piano, a
soft pad, a round bass and noise drums — enough to hear the harmony, the groove and where the
lines fall. Both are deterministic, so a rehearsal's WAV is the same for the same seed.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from livekomp.files import write_atomically
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
# The music is levelled to this RMS (its peak kept under MUSIC_PEAK) and the voice sits at
# VOICE_GAIN of its own peak: fixed gains, so adding a line never changes the music around it.
MUSIC_RMS = 0.045
MUSIC_PEAK = 0.45
VOICE_GAIN = 0.9


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


def render_music(
    midi_path: Path, soundfont: Path | None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """The music of `midi_path` and how it was made ("fluidsynth:NAME.sf2" or "builtin")."""
    if soundfont is not None and shutil.which("fluidsynth") is not None:
        try:
            return render_fluidsynth(
                midi_path, soundfont, sample_rate
            ), f"fluidsynth:{soundfont.name}"
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            log.warning("%s; the built-in synth plays instead", exc)
    elif soundfont is not None:
        log.warning("fluidsynth is not installed; the built-in synth plays instead")
    return render_builtin(midi_path, sample_rate), "builtin"


def mix(
    music: np.ndarray,
    lines: list[tuple[float, Speech]],
    *,
    sample_rate: int = SAMPLE_RATE,
    voice_gain: float = 1.0,
) -> np.ndarray:
    """Music (levelled) with each (start_s, speech) line added at its sample, centred."""
    end = len(music)
    for start_s, speech in lines:
        end = max(end, round(start_s * sample_rate) + len(speech.samples))
    out = np.zeros((end, 2), np.float32)
    if len(music):
        rms = float(np.sqrt(np.mean(music.astype(np.float64) ** 2)))
        peak = float(np.max(np.abs(music)))
        if rms > 0:
            out[: len(music)] += music * min(MUSIC_RMS / rms, MUSIC_PEAK / peak)
    for start_s, speech in lines:
        if speech.sample_rate != sample_rate:
            raise ValueError("speech must be rendered at the mix rate")
        start = max(0, round(start_s * sample_rate))
        samples = speech.samples * (VOICE_GAIN * voice_gain)
        out[start : start + len(samples)] += samples[:, None]
    return np.clip(out, -1.0, 1.0)


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
