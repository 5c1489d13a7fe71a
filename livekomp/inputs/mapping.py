"""Mapping files: which OSC address or MIDI message moves which parameter, and how.

The address space lives in `mappings/*.toml`, not in code. A file holds any of four kinds of
route, each an array of tables (see the shipped presets for commented examples):

    [[osc]]      address = "/livekomp/xy", types = "ff", args = [{ target = "valence", ... }, ...]
                 or address = "/livekomp/start", trigger = "start"
    [[cc]]       cc = 1, channel = "any", target = "valence"    or  cc = 116, trigger = "start"
    [[note]]     note = 36, channel = 10, trigger = "panic"
    [[program]]  channel = "any", target = "scene", names = ["intro", "verse", ...]
                 (target = "style": names are style names; without names, program 1 is
                 "base" and program n the (n-1)th style loaded)

A number becomes a parameter value in three steps: normalize it from the declared input `range`
to 0..1, bend it with the `curve`, then spread it over the output range `to` (by default the
parameter's whole range from `PARAM_RANGES`). A value outside the input range is dropped, not
clamped: a controller sending something unexpected should be noticed, not papered over.

Triggers (start, stop, panic) fire on press only: an OSC trigger fires with no argument or with
a numeric argument >= 0.5 (TouchOSC buttons send 1.0 on press, 0.0 on release); a CC trigger
fires when the value is >= its threshold (64 by default); a note trigger fires on note-on with
velocity > 0. Releases are understood and ignored.

Loading fails at once with a `MappingError` naming the file and the key path; at run time,
`Mapping.osc_events` and `Mapping.midi_events` raise the `InputError` family, which the servers
count and drop.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from livekomp.inputs.events import PARAM_RANGES, TEXT_PARAMS, TRIGGER_PARAMS, ControlEvent, Param
from livekomp.music.phrase import parse_style
from livekomp.tomlfile import read_toml

PRESET_DIR = Path(__file__).resolve().parents[2] / "mappings"
DEFAULT_PRESETS = ("touchosc", "midi_cc")

# Input values may overshoot the declared range by this much (in normalized units) before they
# count as out of range: float32 arithmetic on the controller side lands on 1.0000001.
RANGE_EPSILON = 1e-6
# Longest text (mood, say, scene) accepted from a controller.
MAX_TEXT_CHARS = 500
TRIGGER_PRESS = 0.5
DEFAULT_CC_THRESHOLD = 64
MIDI_DATA_RANGE = (0.0, 127.0)


# ---------------------------------------------------------------------------------------------
# Errors


class MappingError(ValueError):
    """A mapping file is wrong; the message names the file and the key path."""


class InputError(ValueError):
    """One incoming message could not be used. `reason` is its `InputStats` counter name."""

    reason: ClassVar[str] = "malformed"


class UnknownAddress(InputError):
    reason = "unknown_address"


class BadArguments(InputError):
    reason = "bad_args"


class OutOfRange(InputError):
    reason = "out_of_range"


class Malformed(InputError):
    reason = "malformed"


# ---------------------------------------------------------------------------------------------
# Curves: shapes on 0..1 with f(0) = 0 and f(1) = 1, monotonic.

_BEND = 4.0  # how strongly exp/log bend; e**4 ≈ 55, so the first half of the travel covers ~12%


def _exp(u: float) -> float:
    return math.expm1(_BEND * u) / math.expm1(_BEND)


def _log(u: float) -> float:
    return math.log1p(u * math.expm1(_BEND)) / _BEND


CURVES: dict[str, Callable[[float], float]] = {
    "linear": lambda u: u,
    "exp": _exp,  # slow start, fast end: fine control at the low end (like a volume fader)
    "log": _log,  # fast start, slow end: fine control at the high end
    "smooth": lambda u: u * u * (3.0 - 2.0 * u),  # fine control at both ends, quick in the middle
}


@dataclass(frozen=True, slots=True)
class Curve:
    """A named shape, or a power `u ** exponent` when `name` is "power"."""

    name: str = "linear"
    exponent: float = 1.0

    def __call__(self, u: float) -> float:
        shape = CURVES.get(self.name)
        return shape(u) if shape is not None else u**self.exponent


@dataclass(frozen=True, slots=True)
class Scale:
    """Input range → 0..1 → curve → output range."""

    in_lo: float
    in_hi: float
    out_lo: float
    out_hi: float
    curve: Curve = Curve()

    def apply(self, x: float) -> float:
        u = (x - self.in_lo) / (self.in_hi - self.in_lo)
        if not (-RANGE_EPSILON <= u <= 1.0 + RANGE_EPSILON):  # NaN fails this too
            lo, hi = sorted((self.in_lo, self.in_hi))
            raise OutOfRange(f"{x!r} is outside {lo:g}..{hi:g}")
        u = min(1.0, max(0.0, u))
        return self.out_lo + (self.out_hi - self.out_lo) * self.curve(u)


# ---------------------------------------------------------------------------------------------
# Routes

# OSC type tags a mapping may declare, and what kind of Python value python-osc gives for them.
# Numbers are interchangeable: TouchOSC sends ints where a float is declared and vice versa.
OSC_TAG_KINDS: dict[str, str] = {"f": "number", "d": "number", "i": "number", "h": "number"}
OSC_TAG_KINDS["s"] = "text"


def _number(value: object) -> float:
    # bool is an int subclass; a T/F argument is not a fader position.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadArguments(f"expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def _text(value: object) -> str:
    # An int is accepted as text so `/livekomp/scene i 2` selects scene "2".
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadArguments(f"expected a string, got {type(value).__name__} {value!r}")
    text = str(value).strip()
    if not text or len(text) > MAX_TEXT_CHARS:
        raise BadArguments(f"text must be 1..{MAX_TEXT_CHARS} characters, got {len(text)}")
    return text


_COERCE: dict[str, Callable[[object], float | str]] = {"number": _number, "text": _text}


@dataclass(frozen=True, slots=True)
class ArgRoute:
    """One argument of an OSC message (or the value of a CC) and the parameter it moves."""

    target: Param
    kind: str  # "number" or "text"
    scale: Scale | None = None  # numbers only

    def value(self, raw: object) -> float | str:
        value = _COERCE[self.kind](raw)
        return self.scale.apply(value) if self.scale is not None else value


def _trigger_fires(args: Sequence[object]) -> bool:
    """The trigger rule: no argument, True, or a number >= 0.5 is a press; less is a release."""
    if len(args) > 1:
        raise BadArguments(f"a trigger takes at most one argument, got {len(args)}")
    if not args:
        return True
    if isinstance(args[0], bool):
        return args[0]
    return _number(args[0]) >= TRIGGER_PRESS


@dataclass(frozen=True, slots=True)
class OscRoute:
    address: str
    types: str = ""
    args: tuple[ArgRoute, ...] = ()
    trigger: Param | None = None
    origin: str = ""  # "file: osc[3]", for messages

    def events(self, args: Sequence[object], source: str) -> list[ControlEvent]:
        if self.trigger is not None:
            return [ControlEvent(self.trigger, None, source)] if _trigger_fires(args) else []
        if len(args) != len(self.args):
            raise BadArguments(
                f"{self.address} expects {len(self.args)} argument(s) ({self.types}), "
                f"got {len(args)}"
            )
        # Values first, events after: one bad argument drops the whole message.
        values = [route.value(raw) for route, raw in zip(self.args, args, strict=True)]
        return [
            ControlEvent(route.target, value, source)
            for route, value in zip(self.args, values, strict=True)
        ]


MidiKey = tuple[str, int | None, int | None]  # (kind, channel 0..15 or None = any, number)


@dataclass(frozen=True, slots=True)
class MidiRoute:
    kind: str  # "cc", "note" or "program"
    channel: int | None  # 0-based; None = any channel
    number: int | None  # CC or note number; None for program change
    target: Param
    arg: ArgRoute | None = None  # continuous CC
    threshold: int = DEFAULT_CC_THRESHOLD  # CC triggers
    names: tuple[str, ...] = ()  # program change → scene/mood names; empty = the number
    origin: str = ""

    @property
    def key(self) -> MidiKey:
        return (self.kind, self.channel, self.number)


# MIDI status (high nibble) → message length, and what each kind of channel message is called.
MIDI_CHANNEL_MESSAGES: dict[int, tuple[str, int]] = {
    0x80: ("note_off", 3),
    0x90: ("note_on", 3),
    0xA0: ("poly_pressure", 3),
    0xB0: ("cc", 3),
    0xC0: ("program", 2),
    0xD0: ("channel_pressure", 2),
    0xE0: ("pitch_bend", 3),
}


def _cc_events(route: MidiRoute, value: int, source: str) -> list[ControlEvent]:
    if route.arg is not None:
        return [ControlEvent(route.target, route.arg.value(value), source)]
    return [ControlEvent(route.target, None, source)] if value >= route.threshold else []


def _note_events(route: MidiRoute, velocity: int, source: str) -> list[ControlEvent]:
    return [ControlEvent(route.target, None, source)] if velocity > 0 else []


def _program_events(route: MidiRoute, program: int, source: str) -> list[ControlEvent]:
    if not route.names:
        return [ControlEvent(route.target, str(program + 1), source)]
    if program >= len(route.names):
        raise OutOfRange(
            f"program {program + 1} has no name (the mapping names {len(route.names)})"
        )
    return [ControlEvent(route.target, route.names[program], source)]


@dataclass(frozen=True, slots=True)
class _MidiKind:
    """How one kind of channel message is looked up and turned into events."""

    route_kind: str  # the MidiRoute.kind it is looked up under
    number_index: int | None  # byte holding the CC / note number; None for program change
    value_index: int  # byte holding the value / velocity / program
    make_events: Callable[[MidiRoute, int, str], list[ControlEvent]]
    # Unmapped CCs are reported (a knob that does nothing is a question the performer will
    # ask); unmapped notes and programs are everyday keyboard traffic and ignored.
    report_unmapped: bool


_MIDI_KINDS: dict[str, _MidiKind] = {
    "cc": _MidiKind("cc", 1, 2, _cc_events, report_unmapped=True),
    "note_on": _MidiKind("note", 1, 2, _note_events, report_unmapped=False),
    "program": _MidiKind("program", None, 1, _program_events, report_unmapped=False),
}


@dataclass(frozen=True, slots=True)
class Mapping:
    """All routes from one or more mapping files, merged."""

    osc: MappingProxyType[str, OscRoute] = field(default_factory=lambda: MappingProxyType({}))
    midi: MappingProxyType[MidiKey, MidiRoute] = field(default_factory=lambda: MappingProxyType({}))
    sources: tuple[str, ...] = ()

    def osc_events(
        self, address: str, args: Sequence[object], source: str = "osc"
    ) -> list[ControlEvent]:
        """The events one OSC message makes; [] for a trigger release. Raises InputError."""
        route = self.osc.get(address)
        if route is None:
            raise UnknownAddress(f"no mapping for OSC address {address!r}")
        return route.events(args, source)

    def midi_events(
        self, message: bytes | Sequence[int], source: str = "midi"
    ) -> list[ControlEvent]:
        """The events one MIDI message makes; [] for anything ignored. Raises InputError."""
        data = bytes(message) if not isinstance(message, bytes) else message
        if not data:
            raise Malformed("empty MIDI message")
        status = data[0]
        if status < 0x80:
            raise Malformed(f"MIDI message starts with data byte {status:#04x}")
        if status >= 0xF0:
            return []  # system messages: clock, sysex, active sensing, song position, ...
        name, length = MIDI_CHANNEL_MESSAGES[status & 0xF0]
        if len(data) != length:
            raise Malformed(f"{name} must be {length} bytes, got {len(data)}: {data[:8].hex(' ')}")
        if any(b >= 0x80 for b in data[1:]):
            raise Malformed(f"{name} has a data byte >= 0x80: {data.hex(' ')}")
        kind = _MIDI_KINDS.get(name)
        if kind is None:
            return []  # note off, pressure, pitch bend: nothing to map
        channel = status & 0x0F
        number = data[kind.number_index] if kind.number_index is not None else None
        route = self.midi.get((kind.route_kind, channel, number)) or self.midi.get(
            (kind.route_kind, None, number)
        )
        if route is None:
            if kind.report_unmapped:
                raise UnknownAddress(
                    f"no mapping for {kind.route_kind} {number} on channel {channel + 1}"
                )
            return []
        return kind.make_events(route, data[kind.value_index], source)


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, slots=True)
class _At:
    """Where in which file a value sits, to name it in errors."""

    file: str
    key: str = ""

    def __truediv__(self, part: str | int) -> _At:
        if isinstance(part, int):
            return _At(self.file, f"{self.key}[{part}]")
        return _At(self.file, f"{self.key}.{part}" if self.key else part)

    def error(self, message: str) -> MappingError:
        return MappingError(
            f"{self.file}: {self.key}: {message}" if self.key else f"{self.file}: {message}"
        )


_PARAM_KINDS: dict[str, frozenset[Param]] = {
    "number": frozenset(PARAM_RANGES),
    "text": TEXT_PARAMS,
    "trigger": TRIGGER_PARAMS,
}
_KIND_HINTS = {
    "number": "a continuous parameter",
    "text": "a text parameter",
    "trigger": "a trigger",
}


def _table(value: object, at: _At, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    if not isinstance(value, dict):
        raise at.error(f"expected a table, got {_describe(value)}")
    allowed = set(allowed)
    for key in value:
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            raise (at / key).error(
                f"unknown key{hint}; expected one of {', '.join(sorted(allowed))}"
            )
    for key in required:
        if key not in value:
            raise (at / key).error("missing")
    return value


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _param(value: object, at: _At, kind: str) -> Param:
    names = [p.value for p in Param]
    if not isinstance(value, str) or value not in names:
        hint = _did_you_mean(value, names) if isinstance(value, str) else ""
        raise at.error(f"unknown parameter {value!r}{hint}; expected one of {', '.join(names)}")
    param = Param(value)
    if param not in _PARAM_KINDS[kind]:
        fitting = ", ".join(sorted(p.value for p in _PARAM_KINDS[kind]))
        raise at.error(f"{value!r} is not {_KIND_HINTS[kind]} here; expected one of {fitting}")
    return param


def _finite(value: object, at: _At) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise at.error(f"expected a number, got {_describe(value)}")
    return float(value)


def _pair(value: object, at: _At) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise at.error(f"expected [low, high], got {_describe(value)}")
    lo, hi = (_finite(v, at / i) for i, v in enumerate(value))
    if lo == hi:
        raise at.error(f"low and high must differ, got [{lo:g}, {hi:g}]")
    return lo, hi


def _curve(value: object, at: _At) -> Curve:
    if isinstance(value, str) and value in CURVES:
        return Curve(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and 0 < value <= 16:
            return Curve("power", float(value))
        raise at.error(f"a power curve must be in (0, 16], got {value!r}")
    hint = _did_you_mean(value, CURVES) if isinstance(value, str) else ""
    raise at.error(
        f"unknown curve {value!r}{hint}; expected one of {', '.join(CURVES)} or a power (number)"
    )


def _scale(spec: dict, at: _At, param: Param, default_range: tuple[float, float]) -> Scale:
    in_lo, in_hi = _pair(spec["range"], at / "range") if "range" in spec else default_range
    p_lo, p_hi = PARAM_RANGES[param]
    out_lo, out_hi = _pair(spec["to"], at / "to") if "to" in spec else (p_lo, p_hi)
    for bound in (out_lo, out_hi):
        if not p_lo <= bound <= p_hi:
            raise (at / "to").error(
                f"{bound:g} is outside {param.value}'s range {p_lo:g}..{p_hi:g}"
            )
    curve = _curve(spec["curve"], at / "curve") if "curve" in spec else Curve()
    return Scale(in_lo, in_hi, out_lo, out_hi, curve)


_SCALE_KEYS = ("range", "to", "curve")


def _arg_route(spec: object, at: _At, tag: str) -> ArgRoute:
    kind = OSC_TAG_KINDS[tag]
    spec = _table(spec, at, ("target", *_SCALE_KEYS), required=("target",))
    param = _param(spec["target"], at / "target", kind)
    if kind == "text":
        extra = [k for k in _SCALE_KEYS if k in spec]
        if extra:
            raise (at / extra[0]).error(f"a text parameter ({param.value}) takes no {extra[0]}")
        return ArgRoute(param, kind)
    return ArgRoute(param, kind, _scale(spec, at, param, PARAM_RANGES[param]))


def _osc_route(spec: object, at: _At) -> OscRoute:
    spec = _table(spec, at, ("address", "types", "args", "trigger"), required=("address",))
    address = spec["address"]
    bad_chars = set(" #*,?[]{}")
    if (
        not isinstance(address, str)
        or not address.startswith("/")
        or any(c in bad_chars for c in address)
    ):
        raise (at / "address").error(
            f"an OSC address starts with '/' and has no spaces or wildcards, got {address!r}"
        )
    origin = f"{at.file}: {at.key}"
    if "trigger" in spec:
        for key in ("types", "args"):
            if key in spec:
                raise (at / key).error(
                    "a trigger route takes no types/args (it fires with no argument or one >= 0.5)"
                )
        return OscRoute(
            address, trigger=_param(spec["trigger"], at / "trigger", "trigger"), origin=origin
        )
    for key in ("types", "args"):
        if key not in spec:
            raise (at / key).error('missing (or give trigger = "start" | "stop" | "panic")')
    types, args = spec["types"], spec["args"]
    if not isinstance(types, str) or not types or any(t not in OSC_TAG_KINDS for t in types):
        raise (at / "types").error(
            f"type tags must be letters from {''.join(OSC_TAG_KINDS)}, got {types!r}"
        )
    if not isinstance(args, list) or len(args) != len(types):
        count = len(args) if isinstance(args, list) else _describe(args)
        raise (at / "args").error(f"types {types!r} needs {len(types)} args, got {count}")
    routes = tuple(
        _arg_route(a, at / "args" / i, t) for i, (a, t) in enumerate(zip(args, types, strict=True))
    )
    return OscRoute(address, types, routes, origin=origin)


def _midi_number(value: object, at: _At) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 127:
        raise at.error(f"expected a whole number 0..127, got {_describe(value)}")
    return value


def _channel(value: object, at: _At) -> int | None:
    if value == "any":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
        raise at.error(f'expected "any" or a channel 1..16, got {_describe(value)}')
    return value - 1


def _cc_route(spec: object, at: _At) -> MidiRoute:
    spec = _table(
        spec,
        at,
        ("cc", "channel", "target", "trigger", "threshold", *_SCALE_KEYS),
        required=("cc",),
    )
    number = _midi_number(spec["cc"], at / "cc")
    channel = _channel(spec.get("channel", "any"), at / "channel")
    origin = f"{at.file}: {at.key}"
    if ("target" in spec) == ("trigger" in spec):
        raise at.error("give exactly one of target (a fader) or trigger (a button)")
    if "trigger" in spec:
        extra = [k for k in _SCALE_KEYS if k in spec]
        if extra:
            raise (at / extra[0]).error("a trigger takes no range/to/curve; use threshold")
        threshold = _midi_number(spec.get("threshold", DEFAULT_CC_THRESHOLD), at / "threshold")
        param = _param(spec["trigger"], at / "trigger", "trigger")
        return MidiRoute("cc", channel, number, param, threshold=threshold, origin=origin)
    if "threshold" in spec:
        raise (at / "threshold").error("only a trigger takes a threshold")
    param = _param(spec["target"], at / "target", "number")
    arg = ArgRoute(param, "number", _scale(spec, at, param, MIDI_DATA_RANGE))
    return MidiRoute("cc", channel, number, param, arg=arg, origin=origin)


def _note_route(spec: object, at: _At) -> MidiRoute:
    spec = _table(spec, at, ("note", "channel", "trigger"), required=("note", "trigger"))
    number = _midi_number(spec["note"], at / "note")
    channel = _channel(spec.get("channel", "any"), at / "channel")
    param = _param(spec["trigger"], at / "trigger", "trigger")
    return MidiRoute("note", channel, number, param, origin=f"{at.file}: {at.key}")


def _program_route(spec: object, at: _At) -> MidiRoute:
    spec = _table(spec, at, ("channel", "target", "names"), required=("target",))
    channel = _channel(spec.get("channel", "any"), at / "channel")
    param = _param(spec["target"], at / "target", "text")
    names = spec.get("names", [])
    if not isinstance(names, list) or len(names) > 128:
        raise (at / "names").error(f"expected a list of up to 128 names, got {_describe(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise (at / "names" / i).error(f"expected a non-empty string, got {_describe(name)}")
        if param is Param.STYLE:
            try:
                parse_style(name)
            except ValueError as exc:
                raise (at / "names" / i).error(str(exc)) from None
    return MidiRoute(
        "program", channel, None, param, names=tuple(names), origin=f"{at.file}: {at.key}"
    )


# Top-level array of tables → how to read one entry.
_SECTIONS: dict[str, Callable[[object, _At], OscRoute | MidiRoute]] = {
    "osc": _osc_route,
    "cc": _cc_route,
    "note": _note_route,
    "program": _program_route,
}
_INFO_KEYS = ("name", "description")


def _route_key(route: OscRoute | MidiRoute) -> str | MidiKey:
    return route.address if isinstance(route, OscRoute) else route.key


def _read_file(path: Path, shown: str) -> list[OscRoute | MidiRoute]:
    doc = read_toml(path, MappingError, "mapping", shown)
    top = _At(shown)
    _table(doc, top, (*_SECTIONS, *_INFO_KEYS))
    routes: list[OscRoute | MidiRoute] = []
    seen: dict[str | MidiKey, str] = {}
    for section, read in _SECTIONS.items():
        entries = doc.get(section, [])
        if not isinstance(entries, list):
            raise (top / section).error(f"expected [[{section}]] tables, got {_describe(entries)}")
        for i, entry in enumerate(entries):
            at = top / section / i
            route = read(entry, at)
            key = _route_key(route)
            if key in seen:
                raise at.error(f"duplicate of {seen[key]} (same address / message and channel)")
            seen[key] = at.key
            routes.append(route)
    return routes


def resolve_mapping_path(name: str | Path) -> Path:
    """A preset name ("touchosc") means `mappings/touchosc.toml`; anything else is a path."""
    text = str(name)
    if "/" not in text and "\\" not in text and not text.endswith(".toml"):
        preset = PRESET_DIR / f"{text}.toml"
        if preset.exists():
            return preset
    return Path(name)


def load_mapping(paths: Sequence[str | Path] = ()) -> Mapping:
    """Read and merge mapping files in order; a later file overrides the same address / CC.

    With no paths, the shipped presets (`DEFAULT_PRESETS`) are loaded.
    """
    names = list(paths) or list(DEFAULT_PRESETS)
    osc: dict[str, OscRoute] = {}
    midi: dict[MidiKey, MidiRoute] = {}
    shown_paths = []
    for name in names:
        path = resolve_mapping_path(name)
        shown = str(path)
        shown_paths.append(shown)
        for route in _read_file(path, shown):
            if isinstance(route, OscRoute):
                osc[route.address] = route
            else:
                midi[route.key] = route
    return Mapping(MappingProxyType(osc), MappingProxyType(midi), tuple(shown_paths))
