"""Configuration: frozen dataclasses, read once from TOML, overridden by command-line flags.

A config file has one table per command, e.g.

    [serve]
    bpm = 110
    osc_port = 9000
    mappings = ["touchosc", "mappings/my_faders.toml"]
    styles = ["reel", "chorale"]     # style adapters to load; the first plays from the start

A bad key or value fails at start-up with the file and the key in the message.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from livekomp.clock.clock import MAX_BPM, MIN_BPM
from livekomp.composer import COMPOSERS, ComposerSettings
from livekomp.inputs.guard import DEFAULT_BURST, DEFAULT_RATE_HZ, AllowError, parse_allow
from livekomp.music.phrase import BASE_STYLE, adapters, parse_style
from livekomp.music.theory import parse_key
from livekomp.tomlfile import read_toml
from livekomp.voice import VOICE_CHOICES


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


CLOCK_SOURCES = ("internal", "midi", "link")


@dataclass(frozen=True, slots=True)
class LiveConfig:
    """Everything `livekomp serve` needs."""

    mappings: tuple[str, ...] = ("touchosc", "midi_cc")
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    # Networks OSC is accepted from ("ADDR/PREFIX"); () = the listening interface's subnet.
    # Loopback is always allowed. Matters only when osc_host is not a loopback address.
    osc_allow: tuple[str, ...] = ()
    osc_rate_hz: float = DEFAULT_RATE_HZ  # datagrams a second per source, past which are dropped
    osc_burst: int = DEFAULT_BURST  # datagrams a source may send at once before the rate applies
    midi_api: str = "auto"  # auto, jack, alsa, coremidi
    midi_out: str | None = None  # None: a virtual port named "livekomp"
    midi_in: str | None = None  # None: a virtual input port for controllers
    bpm: float = 120.0
    beats_per_bar: int = 4
    key: str = "C"
    seed: int = 0
    lookahead_beats: float = 1.0
    slew_s: float = 0.3
    clock_out: bool = True
    record: str | None = None  # write what was sent to this .mid
    summary: str | None = None  # write a run summary (bars, inputs, composer) here on exit
    ready_file: str | None = None  # say here, as JSON, when the server is ready (see README)
    rt_priority: int = 3  # SCHED_FIFO priority of the send thread; keep below the audio server
    spin_us: float = 200.0  # how long before a deadline the send thread stops sleeping and spins
    clock: str = "internal"  # internal (livekomp is the master), midi (follow MIDI clock), link
    midi_clock_in: str | None = None  # the port MIDI clock comes in on; None: a virtual input
    clock_timeout_beats: float = 4.0  # following: keep time this long after the ticks stop
    clock_trace: str | None = None  # following MIDI clock: write what was heard here on exit
    nudge_ms: float = 0.0  # shift every MIDI message by this much (negative: earlier)
    feedback: str | None = None  # "HOST:PORT" to send OSC feedback to (the controller); None: off
    feedback_rate_hz: float = 10.0  # feedback snapshots a second (only changes are sent)
    voice: str = "piper"  # piper, espeak-ng, coqui, or "none" for no voice
    voice_fallback: str | None = "espeak-ng"  # speaks when the voice is missing or fails
    voice_model: str | None = None  # a piper .onnx or a Coqui model (default: the joe voice)
    voice_config: str | None = None  # the model's config file
    audio_out: str | None = None  # output device for the voice (default: the system's)
    voice_level_db: float = 0.0  # the voice's output level
    duck: float = 1.0  # velocity factor for notes under a spoken line (1 = no ducking)
    align: str = "bar"  # lines start on the next "bar" line or "beat"
    lines: str | None = None  # lines file for responses to mood words (default: shipped)
    responses: bool = True  # answer mood words and intents with a spoken line
    composer: str = "neural"  # neural (falls back to rules without checkpoints) | rules
    device: str = "auto"  # where the models run: auto (CUDA, MPS, CPU) | cpu | cuda | mps
    runtime: str = "torch"  # torch | onnx (onnxruntime, CPU)
    int8: bool = False  # dynamic int8 quantization of the melody model (CPU)
    checkpoints: str | None = None  # None: the checkpoints shipped with livekomp
    budget_ms: float = 60.0  # a fresh bar later than this gives way to a buffered one or the rules
    styles: tuple[str, ...] = ()  # style adapters to load; the first plays from the start
    adapters: str | None = None  # the adapters folder (None: $LIVEKOMP_ADAPTERS, else ./adapters)

    def composer_settings(self) -> ComposerSettings:
        return ComposerSettings(
            composer=self.composer,
            device=self.device,
            runtime=self.runtime,
            int8=self.int8,
            checkpoints=self.checkpoints,
            budget_ms=self.budget_ms,
            styles=adapters(map(parse_style, self.styles)),
            adapters=self.adapters,
        )

    @property
    def initial_style(self) -> str:
        """The style the set starts in (a `BarRequest.style`): the first of `styles`."""
        return parse_style(self.styles[0]) if self.styles else BASE_STYLE

    def __post_init__(self) -> None:
        checks = {
            "osc_port": 0 <= self.osc_port <= 65535,
            "osc_rate_hz": 1 <= self.osc_rate_hz <= 1_000_000,
            "osc_burst": 1 <= self.osc_burst <= 1_000_000,
            "bpm": MIN_BPM <= self.bpm <= MAX_BPM,
            "beats_per_bar": 1 <= self.beats_per_bar <= 16,
            "lookahead_beats": 0 < self.lookahead_beats <= self.beats_per_bar,
            "slew_s": 0 <= self.slew_s <= 60,
            "rt_priority": 0 <= self.rt_priority <= 99,
            "spin_us": 0 <= self.spin_us <= 5000,
            "clock_timeout_beats": 0 < self.clock_timeout_beats <= 64,
            "nudge_ms": -500 <= self.nudge_ms <= 500,
            "feedback_rate_hz": 0.5 <= self.feedback_rate_hz <= 100,
            "composer": self.composer in COMPOSERS,
            "device": self.device in ("auto", "cpu", "cuda", "mps"),
            "runtime": self.runtime in ("torch", "onnx"),
            "budget_ms": 1 <= self.budget_ms <= 10_000,
            "voice": self.voice in VOICE_CHOICES,
            "voice_fallback": self.voice_fallback in (None, *VOICE_CHOICES),
            "voice_level_db": -60 <= self.voice_level_db <= 12,
            "duck": 0 <= self.duck <= 1,
            "align": self.align in ("bar", "beat"),
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"{key}: {getattr(self, key)!r} is out of range")
        if self.clock not in CLOCK_SOURCES:
            raise ConfigError(f"clock: {self.clock!r}; choose {', '.join(CLOCK_SOURCES)}")
        if self.feedback is not None:
            from livekomp.outputs.osc import parse_target

            try:
                parse_target(self.feedback)
            except ValueError as exc:
                raise ConfigError(f"feedback: {exc}") from None
        for entry in self.osc_allow:
            try:
                parse_allow(entry)
            except AllowError as exc:
                raise ConfigError(f"osc_allow: {exc}") from None
        try:
            parse_key(self.key)
        except ValueError as exc:
            raise ConfigError(f"key: {exc}") from None
        for name in self.styles:
            try:
                parse_style(name)
            except ValueError as exc:
                raise ConfigError(f"styles: {exc}") from None


def _coerce(name: str, hint: Any, value: object, where: str) -> object:
    """Check a TOML value against a field's type hint; ints are accepted for floats."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        is_tuple = typing.get_origin(option) is tuple and isinstance(value, list)
        if is_tuple and all(isinstance(item, str) for item in value):
            return tuple(value)
    raise ConfigError(f"{where}{name}: {value!r} is not a valid value ({hint})")


def config_from_table(table: dict[str, object], where: str = "") -> dict[str, object]:
    """Validate a table of LiveConfig overrides (unknown keys and wrong types are errors)."""
    hints = typing.get_type_hints(LiveConfig)
    known = {f.name for f in fields(LiveConfig)}
    values: dict[str, object] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}{key}: unknown setting; known: {', '.join(sorted(known))}")
        values[key] = _coerce(key, hints[key], value, where)
    return values


def load_live_config(path: str | Path | None, overrides: dict[str, object]) -> LiveConfig:
    """The [serve] table of `path` (if given), then `overrides` (flags that were set) on top."""
    values: dict[str, object] = {}
    if path is not None:
        path = Path(path)
        data = read_toml(path, ConfigError, "config")
        table = data.get("serve", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: serve: expected a [serve] table")
        values = config_from_table(table, f"{path}: serve.")
    values.update(config_from_table(overrides, "command line: "))
    try:
        return replace(LiveConfig(), **values)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"{path or 'command line'}: {exc}") from None
