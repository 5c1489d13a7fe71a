"""MIDI controllers: python-rtmidi messages in, `ControlEvent`s out.

rtmidi calls back on its own thread (with JACK, the JACK process thread), so the callback only
copies the bytes and hands them to trio with `TrioToken.run_sync_soon`, which never blocks.
In trio they go through a bounded queue (a full queue drops and counts, it never waits), then
are parsed and mapped. Opening and closing ports is blocking work and runs in a worker thread.

With JACK, the client is named `CLIENT_NAME` ("livekomp"; JACK appends "-01", "-02", ... when
that name is taken) and a virtual input appears as "livekomp:livekomp in".
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from functools import partial

import rtmidi
import trio

from livekomp.inputs.events import ControlEvent
from livekomp.inputs.mapping import InputError, Mapping
from livekomp.inputs.stats import InputStats
from livekomp.midiports import CLIENT_NAME

log = logging.getLogger("livekomp.midi")

VIRTUAL_PORT_NAME = "livekomp in"
# Messages between rtmidi's thread and the mapper. A fader sweep is ~130 messages; the mapper
# keeps up easily, so this only fills if trio is stalled.
QUEUE_SIZE = 1024
TRANSPORT = "midi"
CONTROL_IGNORE = {"sysex": True, "timing": True, "active_sense": True}


class MidiPortNotFound(OSError):
    """No (or more than one) MIDI input port matches the requested name.

    An OSError like rtmidi's own errors (e.g. "JACK server not running?"), so the command line
    reports all of them as problems the user can fix, without a traceback.
    """


def find_port(ports: Sequence[str], wanted: str) -> int:
    """Index of the port named `wanted`: an exact match, else the one port containing it."""
    needle = wanted.casefold()
    exact = [i for i, port in enumerate(ports) if port.casefold() == needle]
    if exact:
        return exact[0]
    matches = [i for i, port in enumerate(ports) if needle in port.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(repr(ports[i]) for i in matches)
        raise MidiPortNotFound(f"MIDI input {wanted!r} is ambiguous: it matches {names}")
    available = ", ".join(repr(port) for port in ports) or "none"
    raise MidiPortNotFound(f"no MIDI input port matches {wanted!r}; available: {available}")


def events_from_midi(
    mapping: Mapping, message: bytes, stats: InputStats, *, source: str = TRANSPORT
) -> list[ControlEvent]:
    """Map one MIDI message. Never raises for bad input: counts and drops."""
    stats.count(TRANSPORT, "received")
    try:
        events = mapping.midi_events(message, source)
    except InputError as e:
        stats.reject(TRANSPORT, e.reason, str(e))
        return []
    if not events:
        stats.count(TRANSPORT, "ignored")
    return events


def open_input(
    port_name: str | None,
    api: int,
    virtual_name: str,
    *,
    client_name: str = CLIENT_NAME,
    ignore: dict[str, bool] | None = None,
) -> tuple[rtmidi.MidiIn, str]:
    """Open `port_name` (or a virtual port `virtual_name` when None); (input, name opened).

    `ignore` is python-rtmidi's ignore_types; by default clock and active sensing are dropped,
    which arrive 24×/beat and 3×/s: the clock follower opens its own port for them.
    """
    midi_in = rtmidi.MidiIn(rtapi=api, name=client_name)
    try:
        if port_name is None:
            midi_in.open_virtual_port(virtual_name)
            opened = virtual_name
        else:
            ports = midi_in.get_ports()
            index = find_port(ports, port_name)
            midi_in.open_port(index, virtual_name)
            opened = ports[index]
        midi_in.ignore_types(**(CONTROL_IGNORE if ignore is None else ignore))
    except BaseException:
        midi_in.delete()
        raise
    return midi_in, opened


def _reopen_input(
    midi_in: rtmidi.MidiIn, port: str, virtual_name: str, callback: object, ignore: dict
) -> bool:
    """Reconnect `midi_in` to the port named `port` after it came back; False if it is gone."""
    ports = midi_in.get_ports()
    if port not in ports:
        return False
    midi_in.cancel_callback()
    midi_in.close_port()
    midi_in.open_port(ports.index(port), virtual_name)
    midi_in.ignore_types(**ignore)
    midi_in.set_callback(callback)
    return True


async def keep_input_open(
    midi_in: rtmidi.MidiIn,
    port: str,
    virtual_name: str,
    callback: object,
    *,
    ignore: dict,
    what: str = "MIDI input",
    period_s: float = 1.0,
) -> None:
    """Hot-plug: watch the port `midi_in` reads (an existing one, by its full name) until
    cancelled; when it disappears say so once, when it is back reopen it and say so."""
    present = True
    while True:
        await trio.sleep(period_s)
        try:
            ports = await trio.to_thread.run_sync(midi_in.get_ports)
        except rtmidi.RtMidiError as err:
            log.warning("%s: cannot list ports: %s", what, err)
            continue
        if present and port not in ports:
            present = False
            log.warning("%s %s is gone; it is reopened when it comes back", what, port)
        elif not present and port in ports:
            present = await trio.to_thread.run_sync(
                _reopen_input, midi_in, port, virtual_name, callback, ignore
            )
            if present:
                log.warning("%s %s is back: reopened", what, port)


def close_input(midi_in: rtmidi.MidiIn) -> None:
    midi_in.cancel_callback()
    midi_in.close_port()
    midi_in.delete()


async def serve_midi_in(
    port_name: str | None,
    mapping: Mapping,
    send_channel: trio.MemorySendChannel[ControlEvent],
    stats: InputStats,
    *,
    api: int,
    virtual_name: str = VIRTUAL_PORT_NAME,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Read a MIDI input until cancelled; `started` with the opened port's name.

    `port_name` picks an existing port (case-insensitive, exact or unique substring; raises
    `MidiPortNotFound` listing the ports otherwise); None opens a virtual input `virtual_name`.
    """
    token = trio.lowlevel.current_trio_token()
    raw_send, raw_receive = trio.open_memory_channel[bytes](QUEUE_SIZE)

    def enqueue(message: bytes) -> None:  # trio thread
        try:
            raw_send.send_nowait(message)
        except trio.WouldBlock:
            stats.count(TRANSPORT, "received")
            stats.reject(TRANSPORT, "overflow", f"input queue full ({QUEUE_SIZE} messages)")
        except trio.ClosedResourceError:
            pass  # shutting down

    def on_message(event: tuple[list[int], float], _data: object) -> None:  # rtmidi's thread
        with contextlib.suppress(trio.RunFinishedError):  # trio already gone: nobody listens
            token.run_sync_soon(enqueue, bytes(event[0]))

    midi_in, opened = await trio.to_thread.run_sync(open_input, port_name, api, virtual_name)
    try:
        midi_in.set_callback(on_message)
        async with trio.open_nursery() as nursery:
            if port_name is not None:  # an existing port may be unplugged and come back
                nursery.start_soon(
                    partial(
                        keep_input_open,
                        midi_in,
                        opened,
                        virtual_name,
                        on_message,
                        ignore=CONTROL_IGNORE,
                        what="MIDI input",
                    )
                )
            task_status.started(opened)
            async with raw_receive:
                async for message in raw_receive:
                    for event in events_from_midi(mapping, message, stats):
                        await send_channel.send(event)
                        stats.count(TRANSPORT, "dispatched")
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close_input, midi_in)
        raw_send.close()
