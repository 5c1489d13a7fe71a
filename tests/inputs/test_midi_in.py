from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import threading
from functools import partial
from typing import ClassVar

import pytest
import rtmidi
import trio
import trio.testing

from livekomp import midiports
from livekomp.inputs import midi as midi_module
from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.mapping import load_mapping
from livekomp.inputs.midi import events_from_midi, serve_midi_in
from livekomp.inputs.stats import InputStats
from livekomp.midiports import MidiPortNotFound, find_port
from tests.jack import jack_ports


@pytest.fixture(scope="module")
def mapping():
    return load_mapping()


# --- pure parts ---------------------------------------------------------------------------------


def test_find_port():
    ports = ["Midi Through:Port-0", "nanoKONTROL2:nanoKONTROL2 MIDI 1", "nanoKEY2:port"]
    assert find_port(ports, "kontrol") == 1
    assert find_port(ports, "NANOKEY2:PORT") == 2
    with pytest.raises(MidiPortNotFound, match="ambiguous: it matches 'nanoKONTROL2"):
        find_port(ports, "nano")
    with pytest.raises(MidiPortNotFound, match="available: 'Midi Through:Port-0', 'nanoK"):
        find_port(ports, "launchpad")
    with pytest.raises(MidiPortNotFound, match="available: none"):
        find_port([], "launchpad")


def test_events_from_midi_counts(mapping):
    stats = InputStats()
    assert events_from_midi(mapping, b"\xb0\x01\x7f", stats) == [
        ControlEvent(Param.VALENCE, 1.0, "midi")
    ]
    assert events_from_midi(mapping, b"\xf8", stats) == []
    assert events_from_midi(mapping, b"\xb0\x01", stats) == []
    assert events_from_midi(mapping, b"\xb0\x55\x00", stats) == []
    assert {k: v for k, v in stats.as_dict()["midi"].items() if v} == {
        "received": 4,
        "ignored": 1,
        "malformed": 1,
        "unknown_address": 1,
    }


# --- the trio plumbing, with a fake rtmidi that records -----------------------------------------


class FakeMidiIn:
    """Stands in for rtmidi.MidiIn: records what was opened, and queues what arrives as rtmidi
    does for a polled input (message, delta time)."""

    instances: ClassVar[list[FakeMidiIn]] = []

    def __init__(self, rtapi: int, name: str, queue_size_limit: int = 1024) -> None:
        self.rtapi, self.name = rtapi, name
        self.opened: tuple[str, ...] | None = None
        self.queue: collections.deque[tuple[list[int], float]] = collections.deque()
        self.ignored: dict[str, bool] = {}
        self.closed = self.deleted = False
        FakeMidiIn.instances.append(self)

    def get_ports(self) -> list[str]:
        return ["Midi Through:Port-0", "Faders:out"]

    def open_virtual_port(self, name: str) -> None:
        self.opened = ("virtual", name)

    def open_port(self, index: int, name: str) -> None:
        self.opened = ("port", self.get_ports()[index], name)

    def ignore_types(self, **kinds: bool) -> None:
        self.ignored = kinds

    def get_message(self) -> tuple[list[int], float] | None:
        return self.queue.popleft() if self.queue else None

    def close_port(self) -> None:
        self.closed = True

    def delete(self) -> None:
        self.deleted = True

    def send_from_thread(self, *messages: list[int]) -> None:
        """What rtmidi does: queue on a thread that is not trio's."""

        def run() -> None:
            for m in messages:
                self.queue.append((m, 0.001))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()


@pytest.fixture
def fake_rtmidi(monkeypatch):
    FakeMidiIn.instances.clear()
    monkeypatch.setattr(midiports.rtmidi, "MidiIn", FakeMidiIn)
    return FakeMidiIn.instances


async def test_polled_messages_reach_trio(mapping, fake_rtmidi):
    stats = InputStats()
    send, receive = trio.open_memory_channel[ControlEvent](10)
    async with trio.open_nursery() as nursery:
        opened = await nursery.start(
            partial(serve_midi_in, None, mapping, send, stats, api=rtmidi.API_UNIX_JACK)
        )
        (fake,) = fake_rtmidi
        assert opened == "livekomp in"
        assert (fake.name, fake.opened) == ("livekomp", ("virtual", "livekomp in"))
        assert fake.ignored == {"sysex": True, "timing": True, "active_sense": True}
        fake.send_from_thread([0xB0, 1, 0], [0xB0, 99, 1], [0xB5, 2, 127], [0xB0, 118, 127])
        with trio.fail_after(5):
            got = [await receive.receive() for _ in range(3)]
        assert got == [
            ControlEvent(Param.VALENCE, -1.0, "midi"),
            ControlEvent(Param.AROUSAL, 1.0, "midi"),
            ControlEvent(Param.PANIC, None, "midi"),
        ]
        nursery.cancel_scope.cancel()
    assert fake.closed and fake.deleted
    assert stats.get("midi", "unknown_address") == 1
    assert stats.get("midi", "dispatched") == 3


async def test_named_port_and_missing_port(mapping, fake_rtmidi):
    send, _receive = trio.open_memory_channel[ControlEvent](10)
    async with trio.open_nursery() as nursery:
        opened = await nursery.start(
            partial(serve_midi_in, "faders", mapping, send, InputStats(), api=0)
        )
        assert opened == "Faders:out"
        assert fake_rtmidi[0].opened == ("port", "Faders:out", "livekomp in")
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        with pytest.raises(
            MidiPortNotFound, match="available: 'Midi Through:Port-0', 'Faders:out'"
        ):
            await nursery.start(partial(serve_midi_in, "drums", mapping, send, InputStats(), api=0))
    assert fake_rtmidi[1].deleted


async def test_full_queue_drops_and_counts(mapping, fake_rtmidi, monkeypatch):
    monkeypatch.setattr(midi_module, "QUEUE_SIZE", 2)
    stats = InputStats()
    send, receive = trio.open_memory_channel[ControlEvent](0)  # nobody reads: the mapper blocks
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_midi_in, None, mapping, send, stats, api=0))
        fake_rtmidi[0].queue.extend([([0xB0, 1, 64], 0.001)] * 10)  # all before the next poll
        with trio.fail_after(5):
            while fake_rtmidi[0].queue:  # the next poll takes them all
                await trio.sleep(0.001)
        await trio.testing.wait_all_tasks_blocked()
        # One poll reads all ten: one goes to the waiting mapper (which then blocks), two wait
        # in the queue, the rest are dropped.
        assert stats.get("midi", "overflow") == 7
        nursery.cancel_scope.cancel()
    receive.close()


# --- real JACK ----------------------------------------------------------------------------------


async def wait_for(predicate, timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


@pytest.mark.jack
async def test_cc_over_jack_virtual_port(mapping, jack_server):
    virtual = f"livekomp in test-{os.getpid()}"
    stats = InputStats()
    send, receive = trio.open_memory_channel[ControlEvent](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                serve_midi_in,
                None,
                mapping,
                send,
                stats,
                api=rtmidi.API_UNIX_JACK,
                virtual_name=virtual,
            )
        )
        # JACK names it "<client>:<port>"; the client is "livekomp", or "livekomp-01", ... when
        # another livekomp client already exists on this server.
        full = [p for p in jack_ports() if p.endswith(f":{virtual}")]
        assert len(full) == 1 and re.fullmatch(r"livekomp(-\d+)?:" + re.escape(virtual), full[0])

        out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="livekomp-test-sender")
        try:
            # MidiOut lists JACK's MIDI *input* ports; open_port creates our own output port
            # and connects it.
            out.open_port(find_port(out.get_ports(), virtual), "to livekomp")
            out.send_message([0xB0, 1, 127])
            out.send_message([0xF8])  # clock: filtered by ignore_types before the callback
            out.send_message([0xB3, 116, 127])
            with trio.fail_after(5):
                first = await receive.receive()
                second = await receive.receive()
        finally:
            out.close_port()
            out.delete()
        assert first.param is Param.VALENCE and first.value == pytest.approx(1.0)
        assert second == ControlEvent(Param.START, None, "midi")
        nursery.cancel_scope.cancel()
    assert not [p for p in jack_ports() if p.endswith(f":{virtual}")]  # closed on the way out
    assert stats.get("midi", "received") == 2


async def kill(process: trio.Process) -> None:
    process.kill()


@pytest.mark.jack
async def test_named_jack_port_fed_by_jack_midiseq(tmp_path, jack_server):
    """A third-party JACK client (jack_midiseq) plays note 60 in a loop into a named port."""
    if shutil.which("jack_midiseq") is None:
        pytest.skip("jack_midiseq not installed")
    (tmp_path / "notes.toml").write_text('[[note]]\nnote = 60\ntrigger = "start"\n')
    mapping = load_mapping([tmp_path / "notes.toml"])
    seq_name = f"lk-seq-{os.getpid()}"
    send, receive = trio.open_memory_channel[ControlEvent](100)
    async with trio.open_nursery() as nursery:
        seq = await nursery.start(
            partial(
                trio.run_process,
                ["jack_midiseq", seq_name, "4800", "0", "60", "2400"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                deliver_cancel=kill,  # jack_midiseq ignores SIGTERM
            )
        )
        try:
            await wait_for(lambda: any(p.startswith(f"{seq_name}:") for p in jack_ports()))
            opened = await nursery.start(
                partial(
                    serve_midi_in,
                    seq_name.upper(),  # matched case-insensitively
                    mapping,
                    send,
                    InputStats(),
                    api=rtmidi.API_UNIX_JACK,
                    virtual_name=f"livekomp in test-{os.getpid()}",
                )
            )
            assert opened.startswith(f"{seq_name}:")
            with trio.fail_after(5):
                assert await receive.receive() == ControlEvent(Param.START, None, "midi")
        finally:
            seq.kill()
        nursery.cancel_scope.cancel()


@pytest.mark.jack
async def test_missing_jack_port_lists_available(mapping, jack_server):
    send, _receive = trio.open_memory_channel[ControlEvent](1)
    async with trio.open_nursery() as nursery:
        with pytest.raises(MidiPortNotFound, match="no MIDI input port matches 'no such device'"):
            await nursery.start(
                partial(
                    serve_midi_in,
                    "no such device",
                    mapping,
                    send,
                    InputStats(),
                    api=rtmidi.API_UNIX_JACK,
                )
            )
