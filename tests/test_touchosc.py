"""The TouchOSC layout: written, parsed back, and every control sends what the mapping takes."""

from __future__ import annotations

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from livekomp.cli import main
from livekomp.inputs.events import Param
from livekomp.inputs.mapping import load_mapping
from livekomp.inputs.osc import events_from_osc
from livekomp.inputs.stats import InputStats
from livekomp.outputs.osc import FEEDBACK_PREFIX
from livekomp.touchosc import FEEDBACK_LABELS, osc_addresses, read_layout

OK_COUNTS = ("received", "dispatched", "ignored")


def messages_a_control_sends(node) -> list[bytes]:
    """The OSC messages this control can send: each argument at both ends of its scale."""
    sent = []
    for osc in node.findall("messages/osc"):
        if osc.findtext("send") != "1":
            continue
        address = osc.findtext("path/partial/value")
        for end in ("scaleMin", "scaleMax"):
            builder = OscMessageBuilder(address)
            for partial in osc.findall("arguments/partial"):
                if partial.findtext("type") == "CONSTANT":
                    builder.add_arg(partial.findtext("value"))
                else:
                    builder.add_arg(float(partial.findtext(end)))
            sent.append(builder.build().dgram)
    return sent


@pytest.mark.parametrize("presets", [["touchosc"], ["touchosc", "midi_cc"]])
def test_the_layout_parses_back_with_every_mapped_control(tmp_path, capsys, presets):
    out = tmp_path / "livekomp.tosc"
    args = [arg for preset in presets for arg in ("--mapping", preset)]
    assert main(["layout", "touchosc", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "not laid out: /livekomp/say" in printed
    assert "not laid out: /livekomp/style: no style names given" in printed

    root = read_layout(out)
    assert root.tag == "lexml" and root[0].get("type") == "GROUP"
    used = osc_addresses(root)
    mapping = load_mapping(presets)
    # Free text, and names only serve knows: no TouchOSC control for them.
    laid_out = set(mapping.osc) - {"/livekomp/say", "/livekomp/style"}
    assert laid_out <= set(used)
    kinds = {node.get("type") for address in laid_out for node in used[address]}
    assert {"XY", "FADER", "BUTTON"} <= kinds
    assert [n.get("type") for n in used["/livekomp/xy"]] == ["XY"]
    for key in FEEDBACK_LABELS:
        (label,) = used[f"{FEEDBACK_PREFIX}/{key}"]
        assert label.get("type") == "LABEL"

    # The surface and the server never disagree: everything a control sends is understood.
    stats = InputStats()
    for address in laid_out:
        for node in used[address]:
            events = [
                event
                for datagram in messages_a_control_sends(node)
                for timed in events_from_osc(mapping, datagram, stats)
                for event in [timed.event]
            ]
            assert events, address  # a button's release (0) is ignored; its press is not
    counts = stats.as_dict()["osc"]
    assert not {reason: n for reason, n in counts.items() if reason not in OK_COUNTS and n}


def test_a_mapping_with_other_ranges_changes_the_controls(tmp_path):
    custom = tmp_path / "mine.toml"
    custom.write_text(
        'name = "mine"\n[[osc]]\naddress = "/my/tempo"\ntypes = "f"\n'
        'args = [{ target = "tempo", range = [60.0, 180.0] }]\n'
    )
    out = tmp_path / "mine.tosc"
    assert main(["layout", "touchosc", "--mapping", str(custom), "--out", str(out)]) == 0
    (fader,) = osc_addresses(read_layout(out))["/my/tempo"]
    partial = fader.find("messages/osc/arguments/partial")
    assert (partial.findtext("scaleMin"), partial.findtext("scaleMax")) == ("60", "180")


def test_style_buttons_send_the_names_serve_loads(tmp_path, capsys):
    out = tmp_path / "styles.tosc"
    styles = ["--style", "ballads", "--style", "reels"]
    assert main(["layout", "touchosc", *styles, "--out", str(out)]) == 0
    assert "/livekomp/style" not in capsys.readouterr().out  # laid out, not reported
    buttons = osc_addresses(read_layout(out))["/livekomp/style"]
    mapping = load_mapping(["touchosc"])
    stats = InputStats()
    sent = [
        timed.event
        for node in buttons
        for datagram in messages_a_control_sends(node)
        for timed in events_from_osc(mapping, datagram, stats)
    ]
    assert list(dict.fromkeys((e.param, e.value) for e in sent)) == [
        (Param.STYLE, "base"),
        (Param.STYLE, "ballads"),
        (Param.STYLE, "reels"),
    ]
    frames = [node.findtext("properties/property[key='frame']/value/x") for node in buttons]
    assert len(set(frames)) == 3  # side by side
    assert main(["layout", "touchosc", "--style", "no good", "--out", str(out)]) == 2


def test_a_layout_that_cannot_be_put_in_place_leaves_no_partial_file(tmp_path):
    from livekomp.touchosc import write_layout

    target = tmp_path / "livekomp.tosc"
    target.mkdir()  # the rename onto a folder fails after the bytes are written
    with pytest.raises(OSError):
        write_layout(load_mapping(["touchosc"]), target)
    assert list(tmp_path.iterdir()) == [target]  # no temporary left beside it
    assert list(target.iterdir()) == []
