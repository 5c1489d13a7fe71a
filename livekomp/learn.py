"""MIDI learn: ask for each parameter in turn, record the control the performer moves, and write
a mapping file (`livekomp learn --out mappings/NAME.toml`).

A fader or knob counts once it has sent two different values (a move, not the value a control
sends when it is touched or the port opens); a button counts on its press (a note-on, or a CC at
64 or more). A control already learned for an earlier parameter is ignored, so a fader still
settling does not steal the next one. Enter skips a parameter; with no terminal (stdin closed),
it waits for the control, or `timeout_s`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from livekomp.files import write_atomically
from livekomp.inputs.events import TRIGGER_PARAMS, Param
from livekomp.inputs.mapping import load_mapping

log = logging.getLogger("livekomp.learn")

DEFAULT_PARAMS: tuple[Param, ...] = (
    Param.VALENCE,
    Param.AROUSAL,
    Param.DENSITY,
    Param.INTENSITY,
    Param.TEMPO,
    Param.START,
    Param.STOP,
    Param.PANIC,
)
PROMPTS: dict[Param, str] = {
    Param.VALENCE: "valence (sad ↔ happy): move a fader or knob",
    Param.AROUSAL: "arousal (calm ↔ excited): move a fader or knob",
    Param.DENSITY: "density (how many notes): move a fader or knob",
    Param.INTENSITY: "intensity (how hard they are played): move a fader or knob",
    Param.TEMPO: "tempo (60..180 BPM): move a fader or knob",
    Param.START: "start: press a button or pad",
    Param.STOP: "stop: press a button or pad",
    Param.PANIC: "panic (all notes off): press a button or pad",
}


@dataclass(frozen=True, slots=True)
class Learned:
    """One control found: a CC or a note, on a channel (1..16, as controllers count)."""

    param: Param
    kind: str  # "cc" or "note"
    number: int
    channel: int

    @property
    def control(self) -> tuple[str, int, int]:
        return self.kind, self.number, self.channel

    def toml(self) -> str:
        key = "trigger" if self.param in TRIGGER_PARAMS else "target"
        lines = [f"[[{self.kind}]]", f"{self.kind} = {self.number}", f"channel = {self.channel}"]
        lines.append(f'{key} = "{self.param.value}"')
        if self.param is Param.TEMPO:
            lines.append("to = [60.0, 180.0]")
        return "\n".join(lines)


class Learner:
    """Decides, message by message, which control the performer means for one parameter."""

    def __init__(self, param: Param, taken: set[tuple[str, int, int]]) -> None:
        self.param = param
        self.taken = taken
        self._values: dict[tuple[int, int], set[int]] = {}

    def feed(self, message: bytes) -> Learned | None:
        if len(message) != 3:
            return None
        status, number, value = message[0] & 0xF0, message[1], message[2]
        channel = (message[0] & 0x0F) + 1
        if self.param in TRIGGER_PARAMS:
            if status == 0x90 and value > 0:
                found = Learned(self.param, "note", number, channel)
            elif status == 0xB0 and value >= 64:
                found = Learned(self.param, "cc", number, channel)
            else:
                return None
        else:
            if status != 0xB0:
                return None
            seen = self._values.setdefault((number, channel), set())
            seen.add(value)
            if len(seen) < 2:
                return None
            found = Learned(self.param, "cc", number, channel)
        return None if found.control in self.taken else found


def mapping_text(learned: Sequence[Learned], name: str) -> str:
    header = [
        f"# livekomp — {name}: written by `livekomp learn`.",
        "# See mappings/midi_cc.toml for the meaning of each key.",
        "",
        f'name = "{name}"',
    ]
    return "\n\n".join(["\n".join(header), *(item.toml() for item in learned)]) + "\n"


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def learn_controls(
    receive: trio.MemoryReceiveChannel[bytes],
    params: Sequence[Param],
    *,
    skip: Callable[[], trio.Event] | None = None,
    timeout_s: float | None = None,
    say: Callable[[str], None] = print,
) -> list[Learned]:
    """Ask for each of `params` in turn; return what was learned (skipped ones left out)."""
    learned: list[Learned] = []
    taken: set[tuple[str, int, int]] = set()
    for i, param in enumerate(params, 1):
        say(f"[{i}/{len(params)}] {PROMPTS.get(param, param.value)} (Enter skips)")
        learner = Learner(param, taken)
        found = None
        skipped = skip() if skip is not None else trio.Event()
        with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when, skipped, nursery.cancel_scope)
                async for message in receive:
                    found = learner.feed(message)
                    if found is not None:
                        nursery.cancel_scope.cancel()
                        break
        if found is None:
            say(f"    {param.value}: skipped")
            continue
        taken.add(found.control)
        learned.append(found)
        say(f"    {param.value}: {found.kind.upper()} {found.number} on channel {found.channel}")
    return learned


async def run_learn(
    out: Path,
    *,
    port_name: str | None,
    api: int,
    params: Sequence[Param] = DEFAULT_PARAMS,
    timeout_s: float | None = None,
    name: str | None = None,
) -> list[Learned]:
    """Open the controller's port, learn, write `out` (checked by loading it back). Nothing
    learned: nothing written."""
    from livekomp.midiports import StampedInput, close_input, open_input, serve_stamped_input

    send, receive = trio.open_memory_channel[bytes](1024)

    def enqueue(message: bytes, _t_s: float) -> None:
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            send.send_nowait(message)  # a flood while nobody learns is dropped

    midi_in, opened = await trio.to_thread.run_sync(open_input, port_name, api, "learn in")
    log.info("MIDI learn: listening on %s", opened)
    current = {"skip": trio.Event()}

    def skip() -> trio.Event:
        current["skip"] = trio.Event()
        return current["skip"]

    async def read_stdin() -> None:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:  # no terminal: nothing to skip with
                return
            current["skip"].set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_stamped_input, StampedInput(midi_in), enqueue)
            nursery.start_soon(read_stdin)
            learned = await learn_controls(receive, params, skip=skip, timeout_s=timeout_s)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(close_input, midi_in)
    if not learned:
        return learned
    write_atomically(out, mapping_text(learned, name or out.stem).encode())  # whole or not at all
    load_mapping([out])  # what was written must load
    return learned
