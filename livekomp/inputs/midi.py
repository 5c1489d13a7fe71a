"""MIDI controllers: python-rtmidi messages in, `ControlEvent`s out.

The input is polled from trio every `POLL_S` (see `livekomp.midiports`: a callback would run
Python in JACK's real-time thread). What is read goes through a bounded queue (a full queue
drops and counts, it never waits), then is parsed and mapped. Opening and closing ports is
blocking work and runs in a worker thread.

With JACK, the client is named `CLIENT_NAME` ("livekomp"; JACK appends "-01", "-02", ... when
that name is taken) and a virtual input appears as "livekomp:livekomp in".
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from livekomp.inputs.events import ControlEvent
from livekomp.inputs.mapping import InputError, Mapping
from livekomp.inputs.stats import InputStats
from livekomp.midiports import (
    CONTROL_IGNORE,
    StampedInput,
    close_input,
    keep_input_open,
    open_input,
    serve_stamped_input,
)

log = logging.getLogger("livekomp.midi")

VIRTUAL_PORT_NAME = "livekomp in"
# Messages between the poll and the mapper. A fader sweep is ~130 messages; the mapper keeps
# up easily, so this only fills if the mapper's consumer is stalled.
QUEUE_SIZE = 1024
TRANSPORT = "midi"


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
    raw_send, raw_receive = trio.open_memory_channel[bytes](QUEUE_SIZE)

    def enqueue(message: bytes, _t_s: float) -> None:
        try:
            raw_send.send_nowait(message)
        except trio.WouldBlock:
            stats.count(TRANSPORT, "received")
            stats.reject(TRANSPORT, "overflow", f"input queue full ({QUEUE_SIZE} messages)")
        except trio.ClosedResourceError:
            pass  # shutting down

    midi_in, opened = await trio.to_thread.run_sync(open_input, port_name, api, virtual_name)
    reader = StampedInput(midi_in)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_stamped_input, reader, enqueue)
            if port_name is not None:  # an existing port may be unplugged and come back
                nursery.start_soon(
                    partial(
                        keep_input_open,
                        midi_in,
                        opened,
                        virtual_name,
                        ignore=CONTROL_IGNORE,
                        on_reopen=reader.restart,
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
