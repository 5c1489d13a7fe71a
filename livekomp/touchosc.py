"""A TouchOSC layout generated from a mapping file, so the surface and the server never disagree.

A `.tosc` file (TouchOSC, the 2022+ editor) is an XML document compressed with zlib: a root
`<lexml version="3">` holding one `<node type="GROUP">`, whose `<children>` are the controls.
Every node has `<properties>` (name, frame, colour, ...), `<values>` (x, y, touch, text) and
`<messages>` (an `<osc>` block: send/receive flags, a path and arguments built from partials).

From the mapping's OSC routes:

- two numbers (e.g. `/livekomp/xy ff`) → an XY pad; one number → a fader; each sends the
  range the mapping declares for it, so it lands where the mapping expects;
- a trigger (start, stop, panic) → a momentary button;
- a `mood` text argument → one button per mood word in `MOOD_BUTTONS`;
- a `scene` text argument → one button per name in `SCENE_BUTTONS`;
- `say` takes free text, which a TouchOSC surface cannot type: it is reported, not laid out
  (the spoken line shows in a feedback label);
- a `style` text argument → one button per style given (`livekomp layout --style NAME ...`,
  the names `serve --style` loads) plus `base`, beside the transport buttons; with no names given
  it is reported, not laid out.

Labels for the feedback the server sends (`livekomp.outputs.osc`) fill the last row. The XY
pad and the faders also receive on their own addresses, so they follow the server's feedback.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from livekomp.files import write_atomically
from livekomp.inputs.events import Param
from livekomp.inputs.mapping import ArgRoute, Mapping
from livekomp.music.phrase import BASE_STYLE
from livekomp.outputs.osc import FEEDBACK_PREFIX

MOOD_BUTTONS = ("grief", "sad", "tender", "calm", "hopeful", "joy", "excited", "anger")
SCENE_BUTTONS = ("intro", "verse", "chorus", "bridge", "outro")
FEEDBACK_LABELS = (
    "valence",
    "arousal",
    "tempo",
    "bar",
    "beat",
    "scene",
    "style",
    "line",
    "composer/fresh",
    "composer/fallbacks",
    "composer/buffer",
)
WIDTH, HEIGHT = 1024, 768

Frame = tuple[int, int, int, int]
Colour = tuple[float, float, float, float]

COLOURS: dict[str, Colour] = {
    "xy": (0.20, 0.60, 0.90, 1.0),
    "fader": (0.95, 0.65, 0.20, 1.0),
    "start": (0.30, 0.80, 0.35, 1.0),
    "stop": (0.75, 0.75, 0.75, 1.0),
    "panic": (0.95, 0.25, 0.20, 1.0),
    "mood": (0.65, 0.45, 0.90, 1.0),
    "scene": (0.40, 0.70, 0.70, 1.0),
    "style": (0.85, 0.55, 0.70, 1.0),
    "label": (0.15, 0.15, 0.15, 1.0),
}


@dataclass
class Layout:
    """The generated document, what each OSC address became, and what could not be laid out."""

    root: ET.Element
    controls: dict[str, list[str]] = field(default_factory=dict)  # address → control names
    skipped: dict[str, str] = field(default_factory=dict)  # address → why

    def to_bytes(self) -> bytes:
        xml = ET.tostring(self.root, encoding="UTF-8", xml_declaration=True)
        return zlib.compress(xml)


def _text(parent: ET.Element, tag: str, text: object) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(text)
    return element


def _property(parent: ET.Element, kind: str, key: str, value: object) -> None:
    prop = ET.SubElement(parent, "property", type=kind)
    _text(prop, "key", key)
    holder = ET.SubElement(prop, "value")
    if kind == "r":
        for name, number in zip("xywh", value, strict=True):  # type: ignore[call-overload]
            _text(holder, name, number)
    elif kind == "c":
        for name, number in zip("rgba", value, strict=True):  # type: ignore[call-overload]
            _text(holder, name, f"{number:g}")
    else:
        holder.text = str(value)


def _partial(parent: ET.Element, kind: str, conversion: str, value: str, lo=0.0, hi=1.0) -> None:
    partial = ET.SubElement(parent, "partial")
    _text(partial, "type", kind)
    _text(partial, "conversion", conversion)
    _text(partial, "value", value)
    _text(partial, "scaleMin", f"{lo:g}")
    _text(partial, "scaleMax", f"{hi:g}")


def _node(kind: str, name: str, frame: Frame, colour: Colour) -> ET.Element:
    node = ET.Element("node", ID=str(uuid.uuid5(uuid.NAMESPACE_URL, f"livekomp/{name}")), type=kind)
    properties = ET.SubElement(node, "properties")
    _property(properties, "s", "name", name)
    _property(properties, "r", "frame", frame)
    _property(properties, "c", "color", colour)
    return node


def _values(node: ET.Element, keys: dict[str, object]) -> None:
    values = ET.SubElement(node, "values")
    for key, default in keys.items():
        value = ET.SubElement(values, "value")
        _text(value, "key", key)
        _text(value, "locked", 0)
        _text(value, "lockedDefaultCurrent", 0)
        _text(value, "default", default)
        _text(value, "defaultPull", 0)


def _osc(
    node: ET.Element,
    address: str,
    arguments: list[tuple[str, str, str, float, float]],
    *,
    send: bool = True,
    receive: bool = True,
    triggers: tuple[tuple[str, str], ...] = (("x", "ANY"),),
) -> None:
    messages = ET.SubElement(node, "messages")
    osc = ET.SubElement(messages, "osc")
    _text(osc, "enabled", 1)
    _text(osc, "send", int(send))
    _text(osc, "receive", int(receive))
    _text(osc, "feedback", 0)
    _text(osc, "connections", "00001")
    holder = ET.SubElement(osc, "triggers")
    for var, condition in triggers:
        trigger = ET.SubElement(holder, "trigger")
        _text(trigger, "var", var)
        _text(trigger, "condition", condition)
    _partial(ET.SubElement(osc, "path"), "CONSTANT", "STRING", address)
    holder = ET.SubElement(osc, "arguments")
    for kind, conversion, value, lo, hi in arguments:
        _partial(holder, kind, conversion, value, lo, hi)
    ET.SubElement(node, "children")


def _input_range(arg: ArgRoute) -> tuple[float, float]:
    assert arg.scale is not None
    return arg.scale.in_lo, arg.scale.in_hi


def _label(name: str, frame: Frame, text: str, address: str | None) -> ET.Element:
    node = _node("LABEL", name, frame, COLOURS["label"])
    _values(node, {"text": text})
    if address is not None:
        _osc(node, address, [("VALUE", "STRING", "text", 0, 1)], send=False)
    else:
        ET.SubElement(node, "children")
    return node


def _text_button(route_address: str, name: str, word: str, frame: Frame, colour: Colour):
    """A button that sends `word` to `route_address` when pressed."""
    node = _node("BUTTON", name, frame, colour)
    _values(node, {"x": 0, "touch": 0})
    _osc(
        node,
        route_address,
        [("CONSTANT", "STRING", word, 0, 1)],
        receive=False,
        triggers=(("x", "RISE"),),
    )
    return node


def build_layout(mapping: Mapping, styles: Sequence[str] = ()) -> Layout:
    """Lay out every OSC route of `mapping` (see the module doc); `styles` names the style
    buttons."""
    root = ET.Element("lexml", version="3")
    group = _node("GROUP", "livekomp", (0, 0, WIDTH, HEIGHT), (0.0, 0.0, 0.0, 1.0))
    ET.SubElement(group, "values")
    ET.SubElement(group, "messages")
    children = ET.SubElement(group, "children")
    root.append(group)
    layout = Layout(root)

    def add(address: str, node: ET.Element) -> None:
        children.append(node)
        name = node.find("properties/property/value")
        layout.controls.setdefault(address, []).append(name.text if name is not None else "")

    routes = sorted(mapping.osc.values(), key=lambda r: r.address)
    xy = [r for r in routes if len(r.args) == 2 and all(a.kind == "number" for a in r.args)]
    faders = [r for r in routes if len(r.args) == 1 and r.args[0].kind == "number"]
    triggers = [r for r in routes if r.trigger is not None]
    texts = [r for r in routes if len(r.args) == 1 and r.args[0].kind == "text"]
    others = [r for r in routes if r not in (*xy, *faders, *triggers, *texts)]

    for i, route in enumerate(xy):
        (x_lo, x_hi), (y_lo, y_hi) = (_input_range(a) for a in route.args)
        name = "/".join(a.target.value for a in route.args)
        node = _node("XY", name, (20 + i * 20, 20 + i * 20, 440, 440), COLOURS["xy"])
        _values(node, {"x": 0.5, "y": 0.5, "touch": 0})
        _osc(
            node,
            route.address,
            [("VALUE", "FLOAT", "x", x_lo, x_hi), ("VALUE", "FLOAT", "y", y_lo, y_hi)],
            triggers=(("x", "ANY"), ("y", "ANY")),
        )
        add(route.address, node)

    fader_w = max(40, min(90, (WIDTH - 500) // max(1, len(faders)) - 10))
    for i, route in enumerate(faders):
        lo, hi = _input_range(route.args[0])
        name = route.args[0].target.value
        x = 480 + i * (fader_w + 10)
        node = _node("FADER", name, (x, 50, fader_w, 390), COLOURS["fader"])
        _values(node, {"x": 0.5, "touch": 0})
        _osc(node, route.address, [("VALUE", "FLOAT", "x", lo, hi)])
        add(route.address, node)
        children.append(_label(f"{name} label", (x, 20, fader_w, 26), name, None))

    for i, route in enumerate(triggers):
        assert route.trigger is not None
        name = route.trigger.value
        colour = COLOURS.get(name, COLOURS["stop"])
        node = _node("BUTTON", name, (20 + i * 150, 480, 140, 80), colour)
        _values(node, {"x": 0, "touch": 0})
        # Press sends 1, release 0: the mapping fires on the press only.
        _osc(node, route.address, [("VALUE", "FLOAT", "x", 0, 1)], receive=False)
        add(route.address, node)

    row_y = 580
    for route in texts:
        target = route.args[0].target
        if target is Param.STYLE and styles:
            # Right of the transport buttons, where the row has room: base, then each style.
            names = (BASE_STYLE, *styles)
            left = 20 + len(triggers) * 150
            width = (WIDTH - 20 - left) // len(names) - 6
            for i, word in enumerate(names):
                frame = (left + i * (width + 6), 480, width, 80)
                node = _text_button(route.address, f"style {word}", word, frame, COLOURS["style"])
                add(route.address, node)
            continue
        words = {Param.MOOD: MOOD_BUTTONS, Param.SCENE: SCENE_BUTTONS}.get(target)
        if words is None:
            layout.skipped[route.address] = (
                "no style names given (livekomp layout touchosc --style NAME ...)"
                if target is Param.STYLE
                else f"{target.value} takes free text, which a TouchOSC surface cannot type"
            )
            continue
        width = (WIDTH - 40) // len(words) - 6
        for i, word in enumerate(words):
            frame = (20 + i * (width + 6), row_y, width, 60)
            node = _text_button(
                route.address, f"{target.value} {word}", word, frame, COLOURS[target.value]
            )
            add(route.address, node)
        row_y += 66

    for route in others:
        layout.skipped[route.address] = f"no control for types {route.types!r}"

    width = (WIDTH - 40) // len(FEEDBACK_LABELS) - 4
    for i, key in enumerate(FEEDBACK_LABELS):
        address = f"{FEEDBACK_PREFIX}/{key}"
        frame = (20 + i * (width + 4), HEIGHT - 56, width, 40)
        children.append(_label(f"fb {key}", frame, key, address))
        layout.controls.setdefault(address, []).append(f"fb {key}")
    return layout


def write_layout(mapping: Mapping, path: str | Path, styles: Sequence[str] = ()) -> Layout:
    layout = build_layout(mapping, styles)
    write_atomically(path, layout.to_bytes())  # whole or not at all
    return layout


def read_layout(path: str | Path) -> ET.Element:
    """Parse a `.tosc` file back (zlib, then XML): for tests and for checking a layout."""
    return ET.fromstring(zlib.decompress(Path(path).read_bytes()))


def osc_addresses(root: ET.Element) -> dict[str, list[ET.Element]]:
    """Every OSC address a parsed layout sends or receives, with the nodes that use it."""
    found: dict[str, list[ET.Element]] = {}
    for node in root.iter("node"):
        for osc in node.findall("messages/osc"):
            for partial in osc.findall("path/partial"):
                found.setdefault(partial.findtext("value", ""), []).append(node)
    return found
