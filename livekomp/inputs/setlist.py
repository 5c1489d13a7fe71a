"""Setlists: a TOML file of cues at bar numbers, turned into control events in rehearsal.

    bpm = 96
    beats_per_bar = 4
    bars = 32
    key = "D"
    [[cue]]
    bar = 0
    mood = "grief"
    [[cue]]
    bar = 16
    valence = 0.8
    ramp_bars = 4
    style = "reel"      # a style adapter from this bar on ("base": the base models)

A malformed setlist fails before anything plays, naming the file, the cue and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from livekomp.affect import MOOD_WORDS, Mood, interpret
from livekomp.clock.clock import MasterClock
from livekomp.inputs.events import PARAM_RANGES, ControlEvent, Param
from livekomp.music.phrase import adapters, parse_style
from livekomp.music.theory import parse_key
from livekomp.tomlfile import read_toml


class SetlistError(ValueError):
    """A setlist that cannot be played; the message names the file and the key."""


# Cue keys that set a number, and the parameter each one moves.
NUMBER_CUE_KEYS: dict[str, Param] = {
    "valence": Param.VALENCE,
    "arousal": Param.AROUSAL,
    "density": Param.DENSITY,
    "intensity": Param.INTENSITY,
    "bpm": Param.TEMPO,
}
TEXT_CUE_KEYS: dict[str, Param] = {
    "mood": Param.MOOD,
    "say": Param.SAY,
    "scene": Param.SCENE,
    "style": Param.STYLE,
}
CUE_KEYS = frozenset({"bar", "ramp_bars", *NUMBER_CUE_KEYS, *TEXT_CUE_KEYS})
TOP_KEYS = frozenset({"bpm", "beats_per_bar", "bars", "key", "seed", "title", "cue"})

MAX_BARS = 100_000
MAX_SAY_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Cue:
    bar: int
    events: tuple[ControlEvent, ...]  # glide_s unset: ramps are in bars until played
    ramp_bars: float = 0.0


@dataclass(frozen=True, slots=True)
class Setlist:
    path: Path
    bpm: float
    beats_per_bar: int
    bars: int
    key: str
    seed: int | None
    title: str
    cues: tuple[Cue, ...]

    @property
    def styles(self) -> tuple[str, ...]:
        """The style adapters the cues ask for, each once, in cue order ("base" is none)."""
        names = (
            parse_style(str(event.value))
            for cue in self.cues
            for event in cue.events
            if event.param is Param.STYLE
        )
        return adapters(names)


def _number(where: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SetlistError(f"{where}: expected a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise SetlistError(f"{where}: {value!r} is outside {low:g}..{high:g}")
    return float(value)


def _integer(where: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SetlistError(f"{where}: expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise SetlistError(f"{where}: {value} is outside {low}..{high}")
    return value


def _text(where: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SetlistError(f"{where}: expected non-empty text, got {value!r}")
    if len(value) > limit:
        raise SetlistError(f"{where}: text longer than {limit} characters")
    return value.strip()


def _parse_cue(where: str, raw: object, bars: int) -> Cue:
    if not isinstance(raw, dict):
        raise SetlistError(f"{where}: a cue must be a table ([[cue]])")
    unknown = sorted(set(raw) - CUE_KEYS)
    if unknown:
        raise SetlistError(
            f"{where}.{unknown[0]}: unknown cue key; known keys: {', '.join(sorted(CUE_KEYS))}"
        )
    if "bar" not in raw:
        raise SetlistError(f"{where}.bar: every cue needs a bar (0-based)")
    bar = _integer(f"{where}.bar", raw["bar"], 0, bars - 1)
    ramp_bars = _number(f"{where}.ramp_bars", raw.get("ramp_bars", 0), 0, bars)
    events: list[ControlEvent] = []
    source = f"setlist:{where}"
    # A mood word first, so explicit numbers in the same cue refine it; a spoken line last, so
    # it is spoken in the cue's mood.
    text_events: list[ControlEvent] = []
    for key, param in TEXT_CUE_KEYS.items():
        if key in raw:
            limit = MAX_SAY_CHARS if key == "say" else 200
            text = _text(f"{where}.{key}", raw[key], limit)
            if param is Param.MOOD and interpret(text, Mood()) is None:
                raise SetlistError(
                    f"{where}.mood: {text!r} is not a mood livekomp knows; "
                    f"try one of: {', '.join(sorted(MOOD_WORDS))}"
                )
            if param is Param.STYLE:
                try:
                    parse_style(text)
                except ValueError as exc:
                    raise SetlistError(f"{where}.style: {exc}") from None
            (text_events if param is Param.SAY else events).append(
                ControlEvent(param, text, source)
            )
    for key, param in NUMBER_CUE_KEYS.items():
        if key in raw:
            low, high = PARAM_RANGES[param]
            events.append(
                ControlEvent(param, _number(f"{where}.{key}", raw[key], low, high), source)
            )
    events += text_events
    if not events:
        raise SetlistError(f"{where}: the cue changes nothing (give valence, arousal, mood, …)")
    return Cue(bar, tuple(events), ramp_bars)


def parse_setlist(data: dict[str, object], path: Path) -> Setlist:
    name = str(path)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SetlistError(
            f"{name}: {unknown[0]}: unknown key; known keys: {', '.join(sorted(TOP_KEYS))}"
        )
    bpm = _number(f"{name}: bpm", data.get("bpm", 120), *PARAM_RANGES[Param.TEMPO])
    beats_per_bar = _integer(f"{name}: beats_per_bar", data.get("beats_per_bar", 4), 1, 16)
    if "bars" not in data:
        raise SetlistError(f"{name}: bars: the setlist must say how many bars it lasts")
    bars = _integer(f"{name}: bars", data["bars"], 1, MAX_BARS)
    key = data.get("key", "C")
    if not isinstance(key, str):
        raise SetlistError(f"{name}: key: expected text like 'D' or 'F#', got {key!r}")
    try:
        parse_key(key)
    except ValueError as exc:
        raise SetlistError(f"{name}: key: {exc}") from None
    seed = data.get("seed")
    if seed is not None:
        seed = _integer(f"{name}: seed", seed, 0, 2**63 - 1)
    title = data.get("title", path.stem)
    if not isinstance(title, str):
        raise SetlistError(f"{name}: title: expected text, got {title!r}")
    raw_cues = data.get("cue", [])
    if not isinstance(raw_cues, list):
        raise SetlistError(f"{name}: cue: cues are written as [[cue]] tables")
    cues = [_parse_cue(f"{name}: cue[{i}]", raw, bars) for i, raw in enumerate(raw_cues)]
    cues.sort(key=lambda cue: cue.bar)  # stable: cues at the same bar keep file order
    return Setlist(path, bpm, beats_per_bar, bars, key, seed, title, tuple(cues))


def load_setlist(path: str | Path) -> Setlist:
    path = Path(path)
    return parse_setlist(read_toml(path, SetlistError, "setlist"), path)


# Cue events go out this many beats before the performer plans the cue's bar, so in virtual time
# they are always applied first (trio runs tasks woken at the same instant in random order).
CUE_LEAD_BEATS = 1e-3


async def serve_setlist(
    setlist: Setlist,
    clock: MasterClock,
    send_channel: trio.MemorySendChannel[ControlEvent],
    *,
    lookahead_beats: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send each cue's events just before the performer plans the cue's bar.

    Numbers jump to their value on the bar (or glide over `ramp_bars`); a tempo cue is pinned to
    the bar line. Returns after the last cue.
    """
    task_status.started()
    async with send_channel:
        for cue in setlist.cues:
            bar_beat = float(cue.bar * setlist.beats_per_bar)
            await clock.sleep_until_beat(bar_beat - lookahead_beats - CUE_LEAD_BEATS)
            ramp_end = bar_beat + cue.ramp_bars * setlist.beats_per_bar
            glide_s = clock.time_at(ramp_end) - clock.time_at(bar_beat)
            for event in cue.events:
                await send_channel.send(replace(event, glide_s=glide_s, at_beat=bar_beat))
