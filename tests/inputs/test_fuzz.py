"""Hostile input never escapes the InputError family, and the handlers never raise at all."""

from __future__ import annotations

import logging
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import OscMessageBuilder

from livekomp.inputs.events import PARAM_RANGES, TEXT_PARAMS, TRIGGER_PARAMS, ControlEvent
from livekomp.inputs.mapping import InputError, load_mapping
from livekomp.inputs.midi import events_from_midi
from livekomp.inputs.osc import events_from_osc
from livekomp.inputs.stats import REASONS, InputStats

MAPPING = load_mapping()
ADDRESSES = sorted(MAPPING.osc)
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# python-osc's builder re-parses what it builds: a NUL ends an OSC string early, and lone
# surrogates cannot be encoded.
OSC_CHARS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])

osc_args = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.binary(max_size=8),
)


@pytest.fixture(autouse=True)
def quiet_python_osc():
    # python-osc warns on the root logger about unknown type tags; hypothesis finds many.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    yield
    root.setLevel(level)


def build(address: str, args: list[object]) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def assert_well_formed(event: ControlEvent) -> None:
    if event.param in PARAM_RANGES:
        lo, hi = PARAM_RANGES[event.param]
        assert isinstance(event.value, float) and lo <= event.value <= hi
    elif event.param in TEXT_PARAMS:
        assert isinstance(event.value, str) and event.value
    else:
        assert event.param in TRIGGER_PARAMS and event.value is None


def assert_counts_add_up(stats: InputStats, transport: str, produced: int) -> None:
    counts = stats.as_dict()[transport]
    assert set(counts) == set(REASONS)
    assert counts["received"] >= 1
    assert counts["dispatched"] == 0  # the pure handlers only map; the servers dispatch
    assert produced >= 0


@FUZZ
@given(st.sampled_from(ADDRESSES), st.lists(osc_args, max_size=4))
def test_osc_events_only_raise_input_errors(address, args):
    try:
        events = MAPPING.osc_events(address, args)
    except InputError:
        return
    for event in events:
        assert_well_formed(event)


@FUZZ
@given(st.text(max_size=30), st.lists(osc_args, max_size=3))
def test_any_address(address, args):
    """Any address: an unknown one is refused as unknown, a known one maps or is refused for
    its arguments; nothing else escapes."""
    try:
        events = MAPPING.osc_events(address, args)
    except InputError as err:
        assert err.reason in REASONS
        assert (err.reason == "unknown_address") == (address not in MAPPING.osc)
        return
    assert address in MAPPING.osc
    for event in events:
        assert_well_formed(event)


@FUZZ
@given(st.binary(max_size=200))
def test_random_datagrams(datagram):
    stats = InputStats()
    got = events_from_osc(MAPPING, datagram, stats)
    assert_counts_add_up(stats, "osc", len(got))
    for timed in got:
        assert timed.delay_s >= 0
        assert_well_formed(timed.event)


@FUZZ
@given(
    st.sampled_from(ADDRESSES),
    st.lists(
        st.one_of(st.floats(width=32), st.integers(-5, 500), st.text(OSC_CHARS, max_size=8)),
        max_size=3,
    ),
    st.integers(min_value=0, max_value=64),
    st.booleans(),
)
def test_truncated_and_mistyped_packets(address, args, cut, as_bundle):
    dgram = build(address, args)
    if as_bundle:
        # Assembled by hand: OscBundleBuilder would re-parse the message and reject some texts.
        plain = build("/livekomp/start", [])
        dgram = (
            b"#bundle\x00"
            + struct.pack(">Q", 1)
            + b"".join(struct.pack(">i", len(part)) + part for part in (plain, dgram))
        )
    dgram = dgram[: max(0, len(dgram) - cut)]
    stats = InputStats()
    got = events_from_osc(MAPPING, dgram, stats)
    for timed in got:
        assert_well_formed(timed.event)
    counts = stats.as_dict()["osc"]
    rejected = sum(counts[r] for r in REASONS if r not in ("received", "dispatched", "scheduled"))
    # Every received message is either mapped (one or more events) or counted under one reason.
    assert counts["received"] >= 1
    assert rejected <= counts["received"]
    assert counts["received"] - rejected <= len(got)


@FUZZ
@given(st.binary(min_size=0, max_size=6))
def test_random_midi_bytes(message):
    stats = InputStats()
    try:
        events = MAPPING.midi_events(message)
    except InputError as e:
        assert e.reason in REASONS
        events = []
    for event in events:
        assert_well_formed(event)
    got = events_from_midi(MAPPING, message, stats)
    assert got == events
    counts = stats.as_dict()["midi"]
    assert counts["received"] == 1
    assert sum(counts.values()) - counts["received"] == (0 if got else 1)


@FUZZ
@given(st.integers(0x80, 0xEF), st.integers(0, 127), st.integers(0, 127))
def test_every_channel_message(status, data1, data2):
    for message in (bytes([status, data1, data2]), bytes([status, data1])):
        try:
            events = MAPPING.midi_events(message)
        except InputError:
            continue
        for event in events:
            assert_well_formed(event)
