from __future__ import annotations

import logging
import shutil
import time
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.mapping import load_mapping
from livekomp.inputs.osc import (
    MAX_BUNDLE_DELAY_S,
    BundleSchedule,
    events_from_osc,
    serve_osc,
)
from livekomp.inputs.stats import LOGGER_NAME, InputStats
from livekomp.ratelog import RateLimitedLog


@pytest.fixture(scope="module")
def mapping():
    return load_mapping()


def message(address: str, *args: object):
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build()


def bundle(timetag: float, *messages) -> bytes:
    builder = OscBundleBuilder(timetag)
    for m in messages:
        builder.add_content(m)
    return builder.build().dgram


# --- the pure packet handler --------------------------------------------------------------------


def test_single_message(mapping):
    stats = InputStats()
    got = events_from_osc(mapping, message("/livekomp/xy", 0.25, 0.75).dgram, stats)
    assert [(t.delay_s, t.event.param, t.event.value) for t in got] == [
        (0.0, Param.VALENCE, -0.5),
        (0.0, Param.AROUSAL, 0.5),
    ]
    assert stats.get("osc", "received") == 1


def test_immediate_and_past_bundles_deliver_now(mapping):
    stats = InputStats()
    for tag in (IMMEDIATELY, time.time() - 10.0, 1.0):
        dgram = bundle(tag, message("/livekomp/valence", 0.5), message("/livekomp/start"))
        got = events_from_osc(mapping, dgram, stats)
        assert [(t.delay_s, t.event.param) for t in got] == [
            (0.0, Param.VALENCE),
            (0.0, Param.START),
        ]


def test_future_bundle_has_delay(mapping):
    got = events_from_osc(
        mapping, bundle(time.time() + 5.0, message("/livekomp/stop")), InputStats()
    )
    (timed,) = got
    assert timed.event.param is Param.STOP
    assert 4.5 < timed.delay_s <= 5.0


def test_nested_bundles(mapping):
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(message("/livekomp/density", 0.5))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(inner.build())
    outer.add_content(message("/livekomp/intensity", 1.0))
    got = events_from_osc(mapping, outer.build().dgram, InputStats())
    assert {t.event.param for t in got} == {Param.DENSITY, Param.INTENSITY}


def test_too_far_ahead_is_dropped(mapping):
    stats = InputStats()
    dgram = bundle(time.time() + MAX_BUNDLE_DELAY_S + 60, message("/livekomp/panic"))
    assert events_from_osc(mapping, dgram, stats) == []
    assert stats.get("osc", "overflow") == 1


@pytest.mark.parametrize(
    ("dgram", "reason"),
    [
        (b"", "malformed"),
        (b"hello", "malformed"),
        (b"#bundle\x00\x00", "malformed"),
        (b"/liv\xb8\x00\x00\x00\x00,f\x00\x00\x00\x00\x00\x00", "malformed"),  # not UTF-8
        (bundle(IMMEDIATELY), "ignored"),  # empty bundle
        (message("/livekomp/xy", 0.5, 0.5).dgram[:-5], "malformed"),
        (message("/nope", 1.0).dgram, "unknown_address"),
        (message("/livekomp/xy", 0.5).dgram, "bad_args"),
        (message("/livekomp/xy", "a", "b").dgram, "bad_args"),
        (message("/livekomp/xy", 2.0, 0.5).dgram, "out_of_range"),
        (message("/livekomp/start", 0.0).dgram, "ignored"),
    ],
)
def test_bad_packets_are_counted(mapping, dgram, reason):
    stats = InputStats()
    assert events_from_osc(mapping, dgram, stats) == []
    assert stats.get("osc", reason) == 1
    assert stats.get("osc", "received") == 1


def test_one_bad_message_in_a_bundle_spares_the_others(mapping):
    stats = InputStats()
    dgram = bundle(IMMEDIATELY, message("/nope"), message("/livekomp/valence", 1.0))
    got = events_from_osc(mapping, dgram, stats)
    assert [t.event.param for t in got] == [Param.VALENCE]
    assert stats.get("osc", "unknown_address") == 1
    assert stats.get("osc", "received") == 2


def test_rejections_are_logged_rate_limited(mapping, caplog):
    now = [0.0]
    stats = InputStats(RateLimitedLog(logging.getLogger(LOGGER_NAME), clock=lambda: now[0]))
    caplog.set_level("WARNING", logger="livekomp.inputs")
    for _ in range(5):
        events_from_osc(mapping, message("/nope").dgram, stats)
    now[0] = 1.5
    events_from_osc(mapping, message("/nope").dgram, stats)
    lines = [r.getMessage() for r in caplog.records if r.name == "livekomp.inputs"]
    assert len(lines) == 2
    assert "unknown_address" in lines[0] and "'/nope'" in lines[0]
    assert lines[1].endswith("(4 more suppressed)")
    assert stats.get("osc", "unknown_address") == 6
    now[0] = 3.0
    events_from_osc(mapping, message("/" + "x" * 5000).dgram, stats)
    assert len(caplog.records[-1].getMessage()) < 300


# --- the schedule on virtual time ---------------------------------------------------------------


async def test_schedule_orders_by_deadline(autojump_clock):
    stats = InputStats()
    send, receive = trio.open_memory_channel[ControlEvent](10)
    schedule = BundleSchedule(send, stats, max_pending=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(schedule.serve)
        t0 = trio.current_time()
        assert schedule.push_nowait(t0 + 2.0, ControlEvent(Param.STOP))
        assert schedule.push_nowait(t0 + 1.0, ControlEvent(Param.START))
        assert schedule.push_nowait(t0 + 1.0, ControlEvent(Param.PANIC))
        assert not schedule.push_nowait(t0 + 1.0, ControlEvent(Param.SAY, "x"))
        got = []
        for _ in range(3):
            event = await receive.receive()
            got.append((event.param, trio.current_time() - t0))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [(Param.START, 1.0), (Param.PANIC, 1.0), (Param.STOP, 2.0)]
        assert stats.get("osc", "overflow") == 1
        assert stats.get("osc", "dispatched") == 3
        nursery.cancel_scope.cancel()


# --- real UDP -----------------------------------------------------------------------------------


@asynccontextmanager
async def running_server(mapping, stats):
    send, receive = trio.open_memory_channel[ControlEvent](100)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_osc, "127.0.0.1", 0, mapping, send, stats)
        client = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with client:

            async def sendto(data: bytes) -> None:
                await client.sendto(data, ("127.0.0.1", port))

            yield port, sendto, receive
        nursery.cancel_scope.cancel()


async def test_udp_round_trip(mapping):
    stats = InputStats()
    async with running_server(mapping, stats) as (_port, sendto, receive):
        with trio.fail_after(5):
            await sendto(message("/livekomp/xy", 0.0, 1.0).dgram)
            a, b = await receive.receive(), await receive.receive()
            assert (a.param, a.value, b.param, b.value) == (
                Param.VALENCE,
                -1.0,
                Param.AROUSAL,
                1.0,
            )

            await sendto(
                bundle(IMMEDIATELY, message("/livekomp/mood", "joy"), message("/livekomp/start"))
            )
            assert await receive.receive() == ControlEvent(Param.MOOD, "joy", "osc")
            assert await receive.receive() == ControlEvent(Param.START, None, "osc")

            # Garbage, then a good message: the server is still there.
            for junk in (b"", b"\x00" * 7, b"#bundle\x00garbage", message("/nope").dgram):
                await sendto(junk)
            await sendto(message("/livekomp/panic", 1.0).dgram)
            assert (await receive.receive()).param is Param.PANIC
    assert stats.get("osc", "malformed") == 3
    assert stats.get("osc", "unknown_address") == 1
    assert stats.get("osc", "dispatched") == 5


async def test_future_bundle_over_udp(mapping):
    # Real sockets cannot run on virtual time, so this one waits a real 0.2 s.
    stats = InputStats()
    async with running_server(mapping, stats) as (_port, sendto, receive):
        with trio.fail_after(5):
            sent_at = trio.current_time()
            await sendto(bundle(time.time() + 0.2, message("/livekomp/scene", "bridge")))
            await sendto(message("/livekomp/scene", "verse").dgram)
            first = await receive.receive()
            assert first.value == "verse"
            later = await receive.receive()
            waited_s = trio.current_time() - sent_at
            assert later.value == "bridge"
            assert 0.15 < waited_s < 1.0
    assert stats.get("osc", "scheduled") == 1


@pytest.mark.liblo
@pytest.mark.skipif(shutil.which("oscsend") is None, reason="oscsend (liblo-tools) not installed")
async def test_oscsend_third_party_client(mapping):
    stats = InputStats()
    async with running_server(mapping, stats) as (port, _sendto, receive):
        with trio.fail_after(10):
            await trio.run_process(
                ["oscsend", "localhost", str(port), "/livekomp/xy", "ff", "0.25", "0.75"]
            )
            a, b = await receive.receive(), await receive.receive()
            assert (a.param, b.param) == (Param.VALENCE, Param.AROUSAL)
            assert a.value == pytest.approx(-0.5)
            assert b.value == pytest.approx(0.5)
            await trio.run_process(
                ["oscsend", "localhost", str(port), "/livekomp/tempo", "i", "96"]
            )
            assert await receive.receive() == ControlEvent(Param.TEMPO, 96.0, "osc")
            await trio.run_process(["oscsend", "localhost", str(port), "/livekomp/say", "s", "hi"])
            assert await receive.receive() == ControlEvent(Param.SAY, "hi", "osc")


def test_as_dict_has_every_reason():
    stats = InputStats()
    stats.count("midi", "received", 2)
    summary = stats.as_dict()
    assert summary["midi"]["received"] == 2
    assert set(summary) == {"osc", "midi"}
    assert (
        set(summary["osc"])
        == set(summary["midi"])
        >= {
            "received",
            "dispatched",
            "unknown_address",
            "bad_args",
            "out_of_range",
            "malformed",
            "ignored",
        }
    )
    with pytest.raises(ValueError):
        stats.count("osc", "typo")
