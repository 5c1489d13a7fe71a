"""The command table: `python -m tools.bench <command> ...` runs one benchmark, prints what it
found (a table, or the result as JSON) and, with `--json FILE`, writes the result there too."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tools.bench
from tools.bench import (
    clock,
    flood,
    follow,
    link,
    models,
    rehearse,
    style,
    sweep,
    timing,
    training,
    voice,
)


def as_json(result: Any) -> str:
    return json.dumps(result, indent=2)


@dataclass(frozen=True, slots=True)
class Command:
    """One benchmark: its help line, the arguments it takes, how it runs (to a JSON-able
    result) and how its result is printed; `json_out`: it takes `--json FILE`."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    format: Callable[[Any], str]
    json_out: bool = True


COMMANDS = (
    Command(
        "flood",
        "an OSC flood from an allowed and a denied source: sender lateness, where it went",
        flood.add_arguments,
        flood.run,
        flood.format_flood,
    ),
    Command(
        "timing",
        "sender process vs dispatcher thread vs trio: send-time error under load",
        timing.add_arguments,
        timing.run,
        timing.format_timing,
    ),
    Command(
        "clock",
        "tempo of a live server's MIDI clock as a JACK receiver hears it",
        clock.add_arguments,
        clock.run,
        clock.format_clock,
    ),
    Command(
        "follow",
        "following a JACK MIDI clock master: tempo error, recovery, phase",
        follow.add_arguments,
        follow.run,
        follow.format_follow,
    ),
    Command(
        "link",
        "Ableton Link: phase agreement with another peer (network namespace, root)",
        link.add_arguments,
        link.run,
        link.format_link,
    ),
    Command(
        "rehearse",
        "rehearsal speed against real time",
        rehearse.add_arguments,
        rehearse.run,
        rehearse.format_rehearse,
        json_out=False,
    ),
    Command(
        "tokens",
        "melody model ms/token: recompute, cache, ONNX",
        models.add_tokens_arguments,
        models.run_tokens,
        as_json,
    ),
    Command(
        "bar",
        "one bar from all three models: p50/p99 per runtime",
        models.add_bar_arguments,
        models.run_bar,
        as_json,
    ),
    Command(
        "sweep",
        "a live run while the XY pad sweeps the plane",
        sweep.add_arguments,
        sweep.run,
        as_json,
    ),
    Command(
        "style",
        "style adapters: size, fine-tune time, unmerged vs merged, switching",
        style.add_arguments,
        style.run,
        as_json,
    ),
    Command(
        "training",
        "tools/train.py on one process against several (torchrun): held-out loss, wall time",
        training.add_arguments,
        training.run,
        as_json,
    ),
    Command(
        "voice",
        "TTS: first audio, real-time factor, cache hits; live say → heard",
        voice.add_arguments,
        voice.run,
        voice.format_voice,
    ),
)


def parser() -> argparse.ArgumentParser:
    assert tools.bench.__doc__ is not None
    top = argparse.ArgumentParser(
        prog="python -m tools.bench", description=tools.bench.__doc__.splitlines()[0]
    )
    commands = top.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help)
        command.add_arguments(sub)
        if command.json_out:
            sub.add_argument("--json", type=Path, help="also write the result here as JSON")
        sub.set_defaults(bench=command)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command: Command = args.bench
    result = command.run(args)
    print(command.format(result))
    if command.json_out and args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
