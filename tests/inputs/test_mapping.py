from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from livekomp.inputs.events import PARAM_RANGES, ControlEvent, Param
from livekomp.inputs.mapping import (
    CURVES,
    PRESET_DIR,
    BadArguments,
    Curve,
    InputError,
    Malformed,
    MappingError,
    OutOfRange,
    UnknownAddress,
    load_mapping,
)


@pytest.fixture(scope="module")
def mapping():
    return load_mapping()


def values(events: list[ControlEvent]) -> dict[Param, object]:
    return {e.param: e.value for e in events}


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- presets ------------------------------------------------------------------------------------


def test_default_loads_both_presets(mapping):
    assert [Path(s).name for s in mapping.sources] == ["touchosc.toml", "midi_cc.toml"]
    assert load_mapping(["touchosc", "midi_cc"]) == mapping
    assert load_mapping([PRESET_DIR / "touchosc.toml"]).osc == mapping.osc


@pytest.mark.parametrize(
    ("xy", "valence", "arousal"),
    [
        ((0.0, 0.0), -1.0, -1.0),
        ((1.0, 1.0), 1.0, 1.0),
        ((0.5, 0.5), 0.0, 0.0),
        ((0.25, 0.75), -0.5, 0.5),
    ],
)
def test_xy_pad(mapping, xy, valence, arousal):
    got = values(mapping.osc_events("/livekomp/xy", list(xy)))
    assert got == pytest.approx({Param.VALENCE: valence, Param.AROUSAL: arousal})


def test_xy_accepts_ints(mapping):
    assert values(mapping.osc_events("/livekomp/xy", [1, 0])) == {
        Param.VALENCE: 1.0,
        Param.AROUSAL: -1.0,
    }


@pytest.mark.parametrize(
    ("address", "arg", "param", "value"),
    [
        ("/livekomp/valence", -0.25, Param.VALENCE, -0.25),
        ("/livekomp/arousal", 1.0, Param.AROUSAL, 1.0),
        ("/livekomp/density", 0.3, Param.DENSITY, 0.3),
        ("/livekomp/intensity", 1, Param.INTENSITY, 1.0),
        ("/livekomp/tempo", 128.0, Param.TEMPO, 128.0),
        ("/livekomp/tempo", 90, Param.TEMPO, 90.0),
        ("/livekomp/mood", "grief", Param.MOOD, "grief"),
        ("/livekomp/say", " hello there ", Param.SAY, "hello there"),
        ("/livekomp/scene", "chorus", Param.SCENE, "chorus"),
        ("/livekomp/scene", 2, Param.SCENE, "2"),
        ("/livekomp/style", "reel", Param.STYLE, "reel"),
        ("/livekomp/style", 2, Param.STYLE, "2"),
    ],
)
def test_single_value_addresses(mapping, address, arg, param, value):
    (event,) = mapping.osc_events(address, [arg], source="test")
    assert event.param is param
    assert event.value == pytest.approx(value) if isinstance(value, float) else event.value == value
    assert event.source == "test"


@pytest.mark.parametrize("name", ["start", "stop", "panic"])
def test_triggers_fire_on_press_only(mapping, name):
    address = f"/livekomp/{name}"
    assert mapping.osc_events(address, []) == [ControlEvent(Param(name), None, "osc")]
    assert len(mapping.osc_events(address, [1.0])) == 1
    assert len(mapping.osc_events(address, [1])) == 1
    assert len(mapping.osc_events(address, [True])) == 1
    assert mapping.osc_events(address, [0.0]) == []
    assert mapping.osc_events(address, [False]) == []
    with pytest.raises(BadArguments):
        mapping.osc_events(address, ["go"])
    with pytest.raises(BadArguments):
        mapping.osc_events(address, [1.0, 1.0])


@pytest.mark.parametrize(
    ("address", "args", "error"),
    [
        ("/livekomp/nope", [1.0], UnknownAddress),
        ("/livekomp/xy", [0.5], BadArguments),
        ("/livekomp/xy", [0.5, 0.5, 0.5], BadArguments),
        ("/livekomp/xy", [0.5, "up"], BadArguments),
        ("/livekomp/xy", [True, 0.5], BadArguments),
        ("/livekomp/xy", [0.5, [0.5]], BadArguments),
        ("/livekomp/xy", [0.5, 1.01], OutOfRange),
        ("/livekomp/xy", [-0.01, 0.5], OutOfRange),
        ("/livekomp/xy", [math.nan, 0.5], OutOfRange),
        ("/livekomp/xy", [math.inf, 0.5], OutOfRange),
        ("/livekomp/valence", [1.5], OutOfRange),
        ("/livekomp/tempo", [500.0], OutOfRange),
        ("/livekomp/mood", [0.5], BadArguments),
        ("/livekomp/mood", ["   "], BadArguments),
        ("/livekomp/say", ["x" * 501], BadArguments),
    ],
)
def test_bad_osc_messages(mapping, address, args, error):
    with pytest.raises(error) as info:
        mapping.osc_events(address, args)
    assert isinstance(info.value, InputError)


def test_tiny_overshoot_is_not_out_of_range(mapping):
    got = values(mapping.osc_events("/livekomp/xy", [1.0000001, -1e-7]))
    assert got == {Param.VALENCE: 1.0, Param.AROUSAL: -1.0}


# --- curves -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CURVES))
def test_curves_are_monotonic_and_pinned(name):
    curve = Curve(name)
    xs = [i / 100 for i in range(101)]
    ys = [curve(x) for x in xs]
    assert ys[0] == pytest.approx(0.0, abs=1e-12)
    assert ys[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in itertools.pairwise(ys))


def test_curve_shapes(tmp_path):
    path = write(
        tmp_path,
        """
[[osc]]
address = "/exp"
types = "f"
args = [{ target = "density", range = [0, 1], curve = "exp" }]
[[osc]]
address = "/log"
types = "f"
args = [{ target = "density", range = [0, 1], curve = "log" }]
[[osc]]
address = "/square"
types = "f"
args = [{ target = "density", range = [0, 1], curve = 2 }]
[[osc]]
address = "/tempo"
types = "f"
args = [{ target = "tempo", range = [0, 1], to = [60, 180], curve = "smooth" }]
[[osc]]
address = "/upside-down"
types = "i"
args = [{ target = "valence", range = [127, 0] }]
""",
    )
    m = load_mapping([path])
    (exp,) = m.osc_events("/exp", [0.5])
    (log,) = m.osc_events("/log", [0.5])
    (square,) = m.osc_events("/square", [0.5])
    assert exp.value < 0.5 < log.value
    assert exp.value == pytest.approx(math.expm1(2) / math.expm1(4))
    assert square.value == pytest.approx(0.25)
    assert [m.osc_events("/tempo", [x])[0].value for x in (0, 0.5, 1)] == pytest.approx(
        [60, 120, 180]
    )
    assert m.osc_events("/upside-down", [127])[0].value == pytest.approx(-1.0)
    assert m.osc_events("/upside-down", [0])[0].value == pytest.approx(1.0)


# --- MIDI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [0, 5, 15])
def test_cc_valence_arousal_any_channel(mapping, channel):
    assert values(mapping.midi_events(bytes([0xB0 | channel, 1, 127]))) == {Param.VALENCE: 1.0}
    assert values(mapping.midi_events(bytes([0xB0 | channel, 1, 0]))) == {Param.VALENCE: -1.0}
    assert values(mapping.midi_events([0xB0 | channel, 2, 127])) == {Param.AROUSAL: 1.0}
    (mid,) = mapping.midi_events(bytes([0xB0 | channel, 2, 64]))
    assert mid.value == pytest.approx(1 / 127)


def test_cc_density_intensity_and_triggers(mapping):
    assert values(mapping.midi_events(bytes([0xB0, 3, 127]))) == {Param.DENSITY: 1.0}
    assert values(mapping.midi_events(bytes([0xB0, 4, 0]))) == {Param.INTENSITY: 0.0}
    for cc, param in [(116, Param.START), (117, Param.STOP), (118, Param.PANIC)]:
        assert mapping.midi_events(bytes([0xB0, cc, 127])) == [ControlEvent(param, None, "midi")]
        assert mapping.midi_events(bytes([0xB0, cc, 64])) == [ControlEvent(param, None, "midi")]
        assert mapping.midi_events(bytes([0xB0, cc, 63])) == []
        assert mapping.midi_events(bytes([0xB0, cc, 0])) == []


@pytest.mark.parametrize(
    "message",
    [
        b"\xf8",  # clock
        b"\xfe",  # active sensing
        b"\xfa",  # start (transport of the clock follower, not ours)
        b"\xf0\x7e\x7f\x06\x01\xf7",  # sysex
        b"\x90\x3c\x64",  # unmapped note on
        b"\x80\x3c\x00",  # note off
        b"\xe0\x00\x40",  # pitch bend
        b"\xc0\x05",  # program change (unmapped)
        b"\xd0\x10",  # channel pressure
    ],
)
def test_unmapped_midi_is_ignored(mapping, message):
    assert mapping.midi_events(message) == []


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", Malformed),
        (b"\x01\x02", Malformed),
        (b"\xb0\x01", Malformed),
        (b"\xb0\x01\x7f\x00", Malformed),
        (b"\xb0\x01\x80", Malformed),
        (b"\xb0\x10\x40", UnknownAddress),
    ],
)
def test_bad_midi(mapping, message, error):
    with pytest.raises(error):
        mapping.midi_events(message)


def test_notes_programs_and_channel_priority(tmp_path):
    path = write(
        tmp_path,
        """
[[cc]]
cc = 7
target = "density"
range = [0, 100]
[[cc]]
cc = 7
channel = 10
target = "intensity"
[[note]]
note = 36
channel = 10
trigger = "panic"
[[program]]
target = "scene"
names = ["intro", "verse"]
[[program]]
channel = 2
target = "mood"
""",
    )
    m = load_mapping([path])
    assert values(m.midi_events(bytes([0xB9, 7, 127]))) == {Param.INTENSITY: 1.0}
    assert values(m.midi_events(bytes([0xB0, 7, 50]))) == {Param.DENSITY: 0.5}
    with pytest.raises(OutOfRange):
        m.midi_events(bytes([0xB0, 7, 101]))
    assert m.midi_events(bytes([0x99, 36, 100])) == [ControlEvent(Param.PANIC, None, "midi")]
    assert m.midi_events(bytes([0x99, 36, 0])) == []  # note-on velocity 0 is a release
    assert m.midi_events(bytes([0x90, 36, 100])) == []  # other channel: unmapped note
    assert values(m.midi_events(bytes([0xC0, 1]))) == {Param.SCENE: "verse"}
    with pytest.raises(OutOfRange):
        m.midi_events(bytes([0xC0, 2]))
    assert values(m.midi_events(bytes([0xC1, 4]))) == {Param.MOOD: "5"}


def test_program_change_selects_a_style(tmp_path):
    path = write(
        tmp_path,
        """
[[program]]
channel = 16
target = "style"
[[program]]
channel = 15
target = "style"
names = ["base", "hymn", "reel"]
""",
    )
    m = load_mapping(["touchosc", path])
    assert values(m.midi_events(bytes([0xCF, 0]))) == {Param.STYLE: "1"}  # program 1
    assert values(m.midi_events(bytes([0xCF, 1]))) == {Param.STYLE: "2"}
    assert values(m.midi_events(bytes([0xCE, 2]))) == {Param.STYLE: "reel"}
    assert values(m.midi_events(bytes([0xCE, 0]))) == {Param.STYLE: "base"}
    assert m.midi_events(bytes([0xC0, 1])) == []  # other channels' programs: not mapped


# --- merging ------------------------------------------------------------------------------------


def test_later_files_override(tmp_path):
    override = write(
        tmp_path,
        """
[[osc]]
address = "/livekomp/xy"
types = "ff"
args = [{ target = "arousal", range = [0, 1] }, { target = "valence", range = [0, 1] }]
[[osc]]
address = "/my/fader"
types = "f"
args = [{ target = "density", range = [0, 1] }]
[[cc]]
cc = 1
target = "valence"
range = [127, 0]
""",
    )
    m = load_mapping(["touchosc", "midi_cc", override])
    assert values(m.osc_events("/livekomp/xy", [0.0, 1.0])) == {
        Param.AROUSAL: -1.0,
        Param.VALENCE: 1.0,
    }
    assert values(m.osc_events("/my/fader", [0.5])) == {Param.DENSITY: 0.5}
    assert values(m.osc_events("/livekomp/valence", [0.5])) == {Param.VALENCE: 0.5}  # kept
    assert values(m.midi_events(bytes([0xB0, 1, 127]))) == {Param.VALENCE: -1.0}
    assert values(m.midi_events(bytes([0xB0, 2, 127]))) == {Param.AROUSAL: 1.0}  # kept


# --- bad files ----------------------------------------------------------------------------------

XY = '[[osc]]\naddress = "/a"\ntypes = "f"\n'


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            XY + 'args = [{ target = "valance" }]',
            "osc[0].args[0].target",
            "unknown parameter 'valance' (did you mean 'valence'?)",
        ),
        ('[[osc]]\naddress = "/a"\ntypes = "fx"\nargs = [{}, {}]', "osc[0].types", "type tags"),
        (XY + 'args = [{ target = "valence" }, { target = "arousal" }]', "osc[0].args", "needs 1"),
        ('[[osc]]\ntypes = "f"\nargs = [{ target = "valence" }]', "osc[0].address", "missing"),
        ('[[osc]]\naddress = "a b"\ntrigger = "start"', "osc[0].address", "starts with '/'"),
        (XY + 'args = [{ target = "valence", range = [1, 1] }]', "osc[0].args[0].range", "differ"),
        (
            XY + 'args = [{ target = "valence", range = [0] }]',
            "osc[0].args[0].range",
            "[low, high]",
        ),
        (
            XY + 'args = [{ target = "valence", range = [0, "x"] }]',
            "osc[0].args[0].range[1]",
            "number",
        ),
        (XY + 'args = [{ target = "valence", to = [0, 2] }]', "osc[0].args[0].to", "outside"),
        (XY + 'args = [{ target = "valence", curve = "wobbly" }]', "osc[0].args[0].curve", "curve"),
        (XY + 'args = [{ target = "valence", curve = -1 }]', "osc[0].args[0].curve", "power"),
        (XY + 'args = [{ target = "start" }]', "osc[0].args[0].target", "not a continuous"),
        (XY + 'args = [{ target = "valence", rnage = [0, 1] }]', "osc[0].args[0].rnage", "range"),
        (
            '[[osc]]\naddress = "/a"\ntypes = "s"\nargs = [{ target = "say", curve = "exp" }]',
            "osc[0].args[0].curve",
            "text",
        ),
        ('[[osc]]\naddress = "/a"\ntrigger = "valence"', "osc[0].trigger", "not a trigger"),
        ('[[osc]]\naddress = "/a"\ntrigger = "stop"\ntypes = "f"', "osc[0].types", "trigger"),
        (
            '[[osc]]\naddress = "/a"\ntrigger = "stop"\n[[osc]]\naddress = "/a"\ntrigger = "start"',
            "osc[1]",
            "duplicate",
        ),
        ('[[cc]]\ncc = 128\ntarget = "valence"', "cc[0].cc", "0..127"),
        ('[[cc]]\ncc = 1\nchannel = 0\ntarget = "valence"', "cc[0].channel", "1..16"),
        ('[[cc]]\ncc = 1\nchannel = 17\ntarget = "valence"', "cc[0].channel", "1..16"),
        ('[[cc]]\ncc = 1\ntarget = "valence"\ntrigger = "start"', "cc[0]", "exactly one"),
        ('[[cc]]\ncc = 1\ntarget = "valence"\nthreshold = 3', "cc[0].threshold", "trigger"),
        ('[[cc]]\ncc = 1\ntarget = "mood"', "cc[0].target", "continuous"),
        ("[[note]]\nnote = 1", "note[0].trigger", "missing"),
        ('[[program]]\ntarget = "scene"\nnames = ["a", 3]', "program[0].names[1]", "string"),
        (
            '[[program]]\ntarget = "style"\nnames = ["base", "my reel"]',
            "program[0].names[1]",
            "'my reel' is not a style name",
        ),
        ('[[osk]]\naddress = "/a"', "osk", "did you mean 'osc'?"),
        ("osc = 3", "osc", "[[osc]]"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, key, words):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(MappingError) as info:
        load_mapping([path])
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_bad_toml_syntax_names_file(tmp_path):
    path = write(tmp_path, '[[osc]]\naddress = "/a\n', "broken.toml")
    with pytest.raises(MappingError, match=r"broken\.toml: not valid TOML"):
        load_mapping([path])


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(MappingError, match=r"nope\.toml: no such mapping file"):
        load_mapping([tmp_path / "nope.toml"])
    with pytest.raises(MappingError, match="no_such_preset: no such mapping file"):
        load_mapping(["no_such_preset"])


def test_error_in_second_file_names_it(tmp_path):
    good = write(tmp_path, XY + 'args = [{ target = "valence" }]', "good.toml")
    bad = write(tmp_path, XY + 'args = [{ target = "arousl" }]', "bad.toml")
    with pytest.raises(MappingError, match=r"bad\.toml: osc\[0\]\.args\[0\]\.target"):
        load_mapping([good, bad])


def test_mapping_is_immutable(mapping):
    with pytest.raises(TypeError):
        mapping.osc["/x"] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        mapping.sources = ()  # type: ignore[misc]


def test_param_ranges_cover_numeric_targets():
    # The default output range of a numeric route is the parameter's own range.
    m = load_mapping(["touchosc"])
    for address, param in [("/livekomp/valence", Param.VALENCE), ("/livekomp/tempo", Param.TEMPO)]:
        lo, hi = PARAM_RANGES[param]
        assert m.osc_events(address, [lo])[0].value == pytest.approx(lo)
        assert m.osc_events(address, [hi])[0].value == pytest.approx(hi)


@pytest.mark.parametrize(
    ("preset", "fader", "button"),
    [
        # Factory defaults: the numbers the preset files cite.
        ("nanokontrol2", bytes((0xB0, 0, 127)), bytes((0xB0, 41, 127))),
        ("launchcontrol_xl", bytes((0xB8, 77, 127)), bytes((0x98, 41, 127))),
        ("mpk_mini_mk3", bytes((0xB0, 70, 127)), bytes((0x99, 36, 100))),
    ],
)
def test_controller_presets_map_their_factory_numbers(preset, fader, button):
    mapping = load_mapping([preset])
    (valence,) = mapping.midi_events(fader)
    assert valence.param is Param.VALENCE and valence.value == 1.0
    (start,) = mapping.midi_events(button)
    assert start.param is Param.START
