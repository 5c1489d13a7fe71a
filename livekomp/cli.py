"""The `livekomp` command: rehearse, generate, serve, ports, layout, learn, finetune, adapters
and bench."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import runpy
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from livekomp import __version__
from livekomp.clock.clock import MAX_BPM, MIN_BPM
from livekomp.voice import VOICE_CHOICES

if TYPE_CHECKING:
    from livekomp.composer import ComposerSettings
    from livekomp.config import LiveConfig

log = logging.getLogger("livekomp")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Flags of `serve` and the LiveConfig field each one sets (only flags actually given override).
SERVE_FLAGS: dict[str, str] = {
    "mapping": "mappings",
    "osc_host": "osc_host",
    "osc_port": "osc_port",
    "osc_allow": "osc_allow",
    "osc_rate": "osc_rate_hz",
    "osc_burst": "osc_burst",
    "midi_api": "midi_api",
    "midi_out": "midi_out",
    "midi_in": "midi_in",
    "bpm": "bpm",
    "beats_per_bar": "beats_per_bar",
    "key": "key",
    "seed": "seed",
    "lookahead_beats": "lookahead_beats",
    "slew_s": "slew_s",
    "clock_out": "clock_out",
    "record": "record",
    "summary": "summary",
    "ready_file": "ready_file",
    "rt_priority": "rt_priority",
    "clock": "clock",
    "midi_clock_in": "midi_clock_in",
    "clock_timeout_beats": "clock_timeout_beats",
    "clock_trace": "clock_trace",
    "nudge_ms": "nudge_ms",
    "feedback": "feedback",
    "feedback_rate_hz": "feedback_rate_hz",
    "voice": "voice",
    "voice_fallback": "voice_fallback",
    "voice_model": "voice_model",
    "voice_config": "voice_config",
    "audio_out": "audio_out",
    "voice_level_db": "voice_level_db",
    "duck": "duck",
    "align": "align",
    "lines": "lines",
    "responses": "responses",
    "composer": "composer",
    "device": "device",
    "runtime": "runtime",
    "int8": "int8",
    "checkpoints": "checkpoints",
    "budget_ms": "budget_ms",
    "style": "styles",
    "adapters": "adapters",
}

VOICES = list(VOICE_CHOICES)


def _voice_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The voice flags `serve` and `rehearse` share (serve: None = the config's value)."""

    def default(value: object) -> object:
        return value if defaults else None

    parser.add_argument(
        "--voice", choices=VOICES, default=default("piper"), help="text-to-speech voice"
    )
    parser.add_argument(
        "--voice-fallback",
        choices=VOICES,
        default=default("espeak-ng"),
        help="speaks when the voice is missing or fails (default espeak-ng)",
    )
    parser.add_argument(
        "--voice-model", metavar="FILE", help="piper .onnx or Coqui model (default: joe)"
    )
    parser.add_argument("--voice-config", metavar="FILE", help="the voice model's config file")
    parser.add_argument(
        "--voice-level-db", type=float, default=default(0.0), help="voice level in dB (default 0)"
    )
    parser.add_argument(
        "--duck",
        type=float,
        default=default(1.0),
        help="velocity factor for notes under a spoken line, e.g. 0.6 (default 1: off)",
    )
    parser.add_argument(
        "--align",
        choices=["bar", "beat"],
        default=default("bar"),
        help="a line starts on the next bar line or beat (default bar)",
    )
    parser.add_argument("--lines", metavar="FILE", help="lines file for responses to mood words")


def _add_composer_flags(parser: argparse.ArgumentParser, *, live: bool) -> None:
    """--composer, --device, --runtime, --int8, --checkpoints, --adapters, --style (and
    --budget-ms live).

    Live, unset flags stay None so a config file can set them; offline the defaults apply.
    """
    defaults = {} if live else {"composer": "neural", "device": "auto", "runtime": "torch"}
    parser.add_argument(
        "--composer",
        choices=["neural", "rules"],
        default=defaults.get("composer"),
        help="neural (default; the rules play if no checkpoint loads) or rules",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default=defaults.get("device"),
        help="where the models run (default auto: CUDA, then MPS, then CPU)",
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default=defaults.get("runtime"),
        help="run the melody model in torch (default) or onnxruntime",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        default=None if live else False,
        help="dynamic int8 quantization of the melody model (CPU)",
    )
    parser.add_argument("--checkpoints", metavar="DIR", help="model checkpoints folder")
    parser.add_argument(
        "--adapters",
        metavar="DIR",
        help="style adapters folder (default: $LIVEKOMP_ADAPTERS, else ./adapters)",
    )
    if live:
        parser.add_argument(
            "--style",
            action="append",
            metavar="NAME",
            help="load this style adapter (repeatable); the first plays from the start, "
            "/livekomp/style or a program change switches between them ('base': no adapter)",
        )
        parser.add_argument(
            "--budget-ms",
            type=float,
            help="ms a fresh bar may take before a buffered bar or the rules play (default 60)",
        )
    else:
        parser.add_argument(
            "--style",
            metavar="NAME",
            help="style adapter to play from bar 0, an error if it cannot load "
            "(default base: no adapter)",
        )


def _composer_settings(args: argparse.Namespace) -> ComposerSettings:
    from livekomp.composer import ComposerSettings

    return ComposerSettings(
        composer=args.composer,
        device=args.device,
        runtime=args.runtime,
        int8=args.int8,
        checkpoints=args.checkpoints,
        adapters=args.adapters,
    )


def _style(args: argparse.Namespace) -> str:
    """The `--style` of rehearse and generate, as a `BarRequest.style`."""
    from livekomp.music.phrase import BASE_STYLE

    return BASE_STYLE if args.style is None else _checked_style(args.style)


def _checked_style(name: str) -> str:
    """A `--style` value as a `BarRequest.style`; a bad name is a ConfigError."""
    from livekomp.config import ConfigError
    from livekomp.music.phrase import parse_style

    try:
        return parse_style(name)
    except ValueError as exc:
        raise ConfigError(f"--style: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livekomp",
        description="Live-performance server: your mood, composed just ahead of the music.",
    )
    parser.add_argument("--version", action="version", version=f"livekomp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rehearse = commands.add_parser("rehearse", help="render a setlist offline in virtual time")
    rehearse.add_argument("setlist", type=Path, help="setlist TOML file")
    rehearse.add_argument("--out", type=Path, required=True, help="output folder")
    rehearse.add_argument("--seed", type=int, help="random seed (default: the setlist's, or 0)")
    rehearse.add_argument(
        "--lookahead-beats",
        type=float,
        default=1.0,
        help="how far ahead of each bar line it is composed (default 1)",
    )
    rehearse.add_argument(
        "--audio", action="store_true", help="also write DIR/set.wav: music and spoken lines"
    )
    rehearse.add_argument(
        "--soundfont", type=Path, metavar="FILE", help="General MIDI .sf2 for fluidsynth"
    )
    rehearse.add_argument(
        "--builtin-synth", action="store_true", help="use the built-in synth, not fluidsynth"
    )
    rehearse.add_argument(
        "--responses", action="store_true", help="answer mood cues with lines from --lines"
    )
    _voice_flags(rehearse, defaults=True)
    _add_composer_flags(rehearse, live=False)

    generate = commands.add_parser(
        "generate", help="write a phrase in one mood to a .mid (deterministic for a seed)"
    )
    generate.add_argument("--valence", type=float, required=True, help="-1 sad .. +1 happy")
    generate.add_argument("--arousal", type=float, required=True, help="-1 calm .. +1 excited")
    generate.add_argument("--bars", type=int, default=8, help="how many bars (default 8)")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--out", type=Path, required=True, metavar="FILE.mid")
    generate.add_argument("--key", default="C", help="tonic, e.g. C, F#, Bb (default C)")
    generate.add_argument("--bpm", type=float, default=120.0, help="tempo (default 120)")
    generate.add_argument("--beats-per-bar", type=int, default=4, help="metre (default 4)")
    _add_composer_flags(generate, live=False)

    serve = commands.add_parser("serve", help="run live until Ctrl-C or SIGTERM")
    serve.add_argument("--config", type=Path, help="TOML file with a [serve] table")
    serve.add_argument(
        "--mapping",
        action="append",
        metavar="FILE",
        help="mapping file or preset name (repeatable; default: touchosc, midi_cc)",
    )
    serve.add_argument("--osc-host", help="address to listen for OSC on (default 127.0.0.1)")
    serve.add_argument("--osc-port", type=int, help="UDP port for OSC (default 9000)")
    serve.add_argument(
        "--osc-allow",
        action="append",
        metavar="ADDR/PREFIX",
        help="accept OSC only from this network (repeatable; default: the subnet of the "
        "interface --osc-host listens on; localhost is always allowed)",
    )
    serve.add_argument(
        "--osc-rate",
        type=float,
        metavar="HZ",
        help="OSC datagrams a second per source address; more are dropped (default 2000)",
    )
    serve.add_argument(
        "--osc-burst",
        type=int,
        metavar="N",
        help="OSC datagrams a source may send at once before --osc-rate applies (default 2000)",
    )
    serve.add_argument(
        "--midi-api",
        choices=["auto", "jack", "alsa", "coremidi"],
        help="MIDI system (default auto: CoreMIDI, ALSA, else JACK)",
    )
    serve.add_argument(
        "--midi-out",
        metavar="NAME",
        help="existing output port to play into (default: a virtual port)",
    )
    serve.add_argument(
        "--midi-in", metavar="NAME", help="controller input port (default: a virtual input port)"
    )
    serve.add_argument("--bpm", type=float, help="tempo (default 120)")
    serve.add_argument("--beats-per-bar", type=int, help="metre (default 4)")
    serve.add_argument("--key", help="tonic, e.g. C, F#, Bb (valence picks the mode)")
    serve.add_argument("--seed", type=int, help="random seed (default 0)")
    serve.add_argument("--lookahead-beats", type=float, help="compose this far ahead (default 1)")
    serve.add_argument("--slew-s", type=float, help="fader smoothing time constant (default 0.3)")
    serve.add_argument(
        "--no-clock-out",
        dest="clock_out",
        action="store_false",
        default=None,
        help="do not send MIDI clock, Start and Stop",
    )
    serve.add_argument("--record", metavar="FILE.mid", help="also write what is sent to a .mid")
    serve.add_argument("--summary", metavar="FILE.json", help="write a run summary on exit")
    serve.add_argument(
        "--no-status",
        action="store_true",
        help="log lines instead of the status view (the view shows when stdout is a terminal)",
    )
    serve.add_argument("--log-file", metavar="FILE", help="also write the log lines to FILE")
    serve.add_argument(
        "--ready-file",
        metavar="FILE.json",
        help="write the server's state here as it starts and stops (for scripts and tools)",
    )
    serve.add_argument(
        "--rt-priority",
        type=int,
        help="SCHED_FIFO priority of the send thread, 0 = normal (default 3)",
    )
    serve.add_argument(
        "--audio-out", metavar="NAME", help="audio output for the voice (default: the system's)"
    )
    serve.add_argument(
        "--no-responses",
        dest="responses",
        action="store_false",
        default=None,
        help="do not answer mood words with a spoken line",
    )
    _voice_flags(serve, defaults=False)
    _add_composer_flags(serve, live=True)

    serve.add_argument(
        "--clock",
        choices=["internal", "midi", "link"],
        help="who keeps time: internal (livekomp, the default), midi (follow MIDI clock, "
        "e.g. from Ableton), link (join an Ableton Link session)",
    )
    serve.add_argument(
        "--midi-clock-in",
        metavar="NAME",
        help="with --clock midi: the port the clock comes in on (default: a virtual input "
        "'clock in')",
    )
    serve.add_argument(
        "--clock-timeout-beats",
        type=float,
        help="following: keep time this many beats after the clock stops, then release all "
        "notes and wait (default 4)",
    )
    serve.add_argument(
        "--clock-trace",
        metavar="FILE",
        help="with --clock midi: on exit, write every clock message heard (arrival time, the "
        "tick count livekomp gave it) to FILE as JSON, to see how livekomp heard the master",
    )
    serve.add_argument(
        "--nudge-ms",
        type=float,
        help="latency compensation: send MIDI this many ms later (negative: earlier) so it "
        "lands with the DAW's audio (default 0)",
    )

    serve.add_argument(
        "--feedback",
        metavar="HOST:PORT",
        help="send OSC feedback (mood, tempo, bar, beat, scene, line, composer health) to the "
        "controller there, e.g. the TouchOSC device's address and its receive port",
    )
    serve.add_argument(
        "--feedback-rate-hz", type=float, help="feedback updates a second (default 10)"
    )

    ports = commands.add_parser("ports", help="list the MIDI ports livekomp can see")
    ports.add_argument("--midi-api", default="auto", choices=["auto", "jack", "alsa", "coremidi"])

    layout = commands.add_parser(
        "layout", help="write a controller layout generated from mapping files"
    )
    layout.add_argument("kind", choices=["touchosc"], help="the layout format")
    layout.add_argument(
        "--mapping",
        action="append",
        metavar="FILE",
        help="mapping file or preset name (repeatable; default: touchosc)",
    )
    layout.add_argument("--out", type=Path, required=True, help="the .tosc file to write")
    layout.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="NAME",
        help="a style button (repeatable; the names serve --style loads; base is always there)",
    )

    learn = commands.add_parser(
        "learn", help="MIDI learn: move each control when asked; writes a mapping file"
    )
    learn.add_argument("--out", type=Path, required=True, help="mapping file to write (.toml)")
    learn.add_argument(
        "--midi-in", metavar="NAME", help="controller port (default: a virtual input 'learn in')"
    )
    learn.add_argument("--midi-api", default="auto", choices=["auto", "jack", "alsa", "coremidi"])
    learn.add_argument(
        "--params",
        help="comma-separated parameters to ask for, in order (default: valence, arousal, "
        "density, intensity, tempo, start, stop, panic)",
    )
    learn.add_argument(
        "--timeout-s", type=float, help="give up on a parameter after this long (default: wait)"
    )

    finetune = commands.add_parser(
        "finetune", help="train a style adapter (LoRA) on a folder of your own MIDI files"
    )
    finetune.add_argument("--midi", type=Path, required=True, metavar="DIR", help="MIDI folder")
    finetune.add_argument("--name", required=True, help="the style's name, e.g. my-ballads")
    finetune.add_argument(
        "--target",
        choices=["melody", "groove", "both"],
        default="both",
        help="which models to adapt (default both)",
    )
    finetune.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    finetune.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default 16)")
    finetune.add_argument(
        "--epochs",
        type=int,
        help="passes over the data (default 60, but no more than make about 300 steps; 40 for a "
        "small folder: under 10 files or 1,000 melody notes)",
    )
    finetune.add_argument(
        "--base-prior",
        type=float,
        default=250,
        metavar="NOTES",
        help="how many notes of evidence the base models count as: the pull toward them, "
        "KL(base ‖ styled) × NOTES / the folder's training notes, keeps a small folder's "
        "style from collapsing (default 250; 0: no pull)",
    )
    finetune.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default="auto",
        help="where to train (default auto: CUDA, then MPS, then CPU)",
    )
    finetune.add_argument(
        "--track", help="the melody's track, by name or number (default: the busiest)"
    )
    finetune.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    finetune.add_argument("--force", action="store_true", help="replace a style of that name")
    _adapter_location_flags(finetune)

    adapters = commands.add_parser("adapters", help="list or merge style adapters")
    adapter_commands = adapters.add_subparsers(dest="adapters_command", required=True)
    listing = adapter_commands.add_parser("list", help="the style adapters in --adapters")
    _adapter_location_flags(listing)
    merge = adapter_commands.add_parser(
        "merge", help="write the base checkpoints with a style merged in (and its ONNX export)"
    )
    merge.add_argument("name", help="the style to merge")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    _adapter_location_flags(merge)

    bench = commands.add_parser(
        "bench", help="run the benchmarks, python -m tools.bench (from a source checkout)"
    )
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for tools.bench")
    return parser


def _drop_python_osc_warnings(record: logging.LogRecord) -> bool:
    """python-osc logs a root-logger warning for every odd packet it parses, unthrottled, so a
    hostile sender could flood the log; livekomp's own input counters report those instead."""
    return "pythonosc" not in record.pathname


def _run_rehearse(args: argparse.Namespace) -> int:
    from livekomp.inputs.setlist import load_setlist
    from livekomp.rehearsal import rehearse

    style = _style(args)
    setlist = load_setlist(args.setlist)
    audio = _audio_options(args) if args.audio else None
    result = rehearse(
        setlist,
        args.out,
        seed=args.seed,
        lookahead_beats=args.lookahead_beats,
        composer=_composer_settings(args),
        audio=audio,
        style=style,
    )
    totals = result.summary["totals"]
    composer = result.summary["composer"]
    print(f"rehearsed {setlist.title!r}: {setlist.bars} bars at {setlist.bpm:g} BPM")
    print(f"  composer: {_composer_line(composer)}")  # type: ignore[arg-type]
    print(f"  {result.midi_path}")
    print(f"  {result.summary_path}")
    if result.wav_path is not None:
        print(f"  {result.wav_path}: {result.wav_described}")
    print(f"  notes: {json.dumps(totals['notes'])}")  # type: ignore[index]
    return 0


def _audio_options(args: argparse.Namespace):
    from livekomp.config import ConfigError
    from livekomp.rehearsal import AudioOptions
    from livekomp.voice.lines import load_responses
    from livekomp.voice.tts import VoiceSpec

    if args.soundfont is not None and not args.soundfont.is_file():
        raise FileNotFoundError(f"{args.soundfont}: no such SoundFont (--soundfont)")
    # The same ranges as serve's config; NaN fails both comparisons.
    for flag, value, low, high in (
        ("--voice-level-db", args.voice_level_db, -60.0, 12.0),
        ("--duck", args.duck, 0.0, 1.0),
    ):
        if not low <= value <= high:
            raise ConfigError(f"{flag}: {value:g} is out of range ({low:g} … {high:g})")
    fallback = None if args.voice_fallback == "none" else args.voice_fallback
    return AudioOptions(
        voice=VoiceSpec(
            args.voice,
            fallback,
            args.voice_model,
            args.voice_config,
        ),
        soundfont=args.soundfont,
        builtin_synth=args.builtin_synth,
        voice_level_db=args.voice_level_db,
        duck=args.duck,
        align=args.align,
        responses=load_responses(args.lines) if args.responses or args.lines else None,
    )


def _composer_line(summary: dict[str, object]) -> str:
    line = str(summary["primary"])
    if summary.get("runtime"):
        line += f" ({summary['runtime']})"
    if summary.get("neural_unavailable"):
        line += f" — neural unavailable: {summary['neural_unavailable']}"
    styles = summary.get("styles") or []
    refused = summary.get("refused_styles") or {}
    assert isinstance(styles, list) and isinstance(refused, dict)
    if styles:
        line += f" — styles: {', '.join(styles)}"
    for name, reason in refused.items():
        line += f" — style {name!r} refused: {reason}"
    return line


def _run_generate(args: argparse.Namespace) -> int:
    import tempfile

    from livekomp.files import write_atomically
    from livekomp.inputs.setlist import Setlist, SetlistError
    from livekomp.mood import Mood
    from livekomp.music.theory import parse_key
    from livekomp.rehearsal import rehearse

    checks = {
        "--valence": -1 <= args.valence <= 1,
        "--arousal": -1 <= args.arousal <= 1,
        "--bars": 1 <= args.bars <= 10_000,
        "--bpm": MIN_BPM <= args.bpm <= MAX_BPM,
        "--beats-per-bar": 1 <= args.beats_per_bar <= 16,
    }
    for flag, ok in checks.items():
        if not ok:
            raise SetlistError(
                f"{flag}: {getattr(args, flag[2:].replace('-', '_'))} is out of range"
            )
    try:
        parse_key(args.key)
    except ValueError as exc:
        raise SetlistError(f"--key: {exc}") from None
    style = _style(args)
    setlist = Setlist(
        path=args.out,
        bpm=args.bpm,
        beats_per_bar=args.beats_per_bar,
        bars=args.bars,
        key=args.key,
        seed=args.seed,
        title=f"livekomp v{args.valence:+.2f} a{args.arousal:+.2f} seed {args.seed}",
        cues=(),
    )
    with tempfile.TemporaryDirectory(prefix="livekomp-generate-") as scratch:
        result = rehearse(
            setlist,
            scratch,
            seed=args.seed,
            slew_s=0.0,
            composer=_composer_settings(args),
            initial_mood=Mood(args.valence, args.arousal),
            style=style,
        )
        write_atomically(args.out, result.midi_path.read_bytes())
    print(f"generated {args.bars} bars: {args.out}")
    print(f"  composer: {_composer_line(result.summary['composer'])}")  # type: ignore[arg-type]
    return 0


def _serve_config(args: argparse.Namespace) -> LiveConfig:
    """The [serve] table of --config, with the flags given on top."""
    from livekomp.config import load_live_config

    overrides = {
        field: getattr(args, flag)
        for flag, field in SERVE_FLAGS.items()
        if getattr(args, flag) is not None
    }
    return load_live_config(args.config, overrides)


def _run_serve(args: argparse.Namespace) -> int:
    from livekomp.app import serve_live

    config = _serve_config(args)
    root = logging.getLogger()
    if args.log_file:
        try:
            handler = logging.FileHandler(args.log_file)
        except OSError as exc:
            print(f"livekomp: error: --log-file {args.log_file}: {exc.strerror}", file=sys.stderr)
            return 2
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(_drop_python_osc_warnings)
        root.addHandler(handler)
    console = None
    if not args.no_status and sys.stdout.isatty():
        from rich.console import Console

        # The view takes the terminal: log lines go to --log-file only (warnings show in it).
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:
                root.removeHandler(handler)
        console = Console()
    trio.run(partial(serve_live, config, status_console=console))
    return 0


def _run_ports(args: argparse.Namespace) -> int:
    from livekomp.midiports import api_name, choose_api
    from livekomp.outputs.midi import list_ports

    api = choose_api(args.midi_api)
    inputs, outputs = list_ports(api)
    print(f"MIDI system: {api_name(api)}")
    print("inputs:")
    for name in inputs or ["(none)"]:
        print(f"  {name}")
    print("outputs:")
    for name in outputs or ["(none)"]:
        print(f"  {name}")
    return 0


def _run_layout(args: argparse.Namespace) -> int:
    from livekomp.inputs.mapping import load_mapping
    from livekomp.music.phrase import adapters
    from livekomp.touchosc import write_layout

    mapping = load_mapping(args.mapping or ["touchosc"])
    styles = list(adapters(map(_checked_style, args.style)))
    layout = write_layout(mapping, args.out, styles)
    controls = sum(len(names) for names in layout.controls.values())
    print(f"wrote {args.out}: {controls} controls for {len(layout.controls)} OSC addresses")
    for address, why in layout.skipped.items():
        print(f"  not laid out: {address}: {why}")
    return 0


def _run_learn(args: argparse.Namespace) -> int:
    from livekomp.inputs.events import Param
    from livekomp.learn import DEFAULT_PARAMS, run_learn
    from livekomp.midiports import choose_api

    params = DEFAULT_PARAMS
    if args.params:
        try:
            params = tuple(Param(name.strip()) for name in args.params.split(","))
        except ValueError as exc:
            from livekomp.config import ConfigError

            raise ConfigError(f"--params: {exc}") from None
    if args.out.exists():
        raise FileExistsError(f"{args.out} exists; choose another --out (or remove it)")
    api = choose_api(args.midi_api)
    learned = trio.run(
        partial(
            run_learn,
            args.out,
            port_name=args.midi_in,
            api=api,
            params=params,
            timeout_s=args.timeout_s,
        )
    )
    if not learned:
        print("nothing was learned; no file written", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(learned)} controls")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[1]
    package = root / "tools" / "bench"
    if not (package / "__main__.py").exists():
        raise FileNotFoundError(f"{package}: bench needs a source checkout of livekomp")
    sys.path.insert(0, str(root))
    sys.argv = ["python -m tools.bench", *args.args]
    runpy.run_module("tools.bench", run_name="__main__", alter_sys=True)
    return 0


def _adapter_location_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapters",
        type=Path,
        metavar="DIR",
        help="style adapters folder (default: $LIVEKOMP_ADAPTERS, else ./adapters)",
    )
    parser.add_argument("--checkpoints", type=Path, metavar="DIR", help="base checkpoints folder")


def _adapters_dir(args: argparse.Namespace) -> Path:
    from livekomp.composer import adapters_dir

    return adapters_dir(args.adapters)


def _run_finetune(args: argparse.Namespace) -> int:
    from livekomp.models.checkpoint import DEFAULT_DIR
    from livekomp.models.finetune import FinetuneOptions, finetune

    options = FinetuneOptions(
        midi=args.midi,
        name=args.name,
        target=args.target,
        rank=args.rank,
        alpha=args.alpha,
        epochs=args.epochs,
        device=args.device,
        track=args.track,
        seed=args.seed,
        force=args.force,
        base_prior_notes=args.base_prior,
    )
    info = finetune(options, _adapters_dir(args), args.checkpoints or DEFAULT_DIR)
    print(f"style {info.name!r} saved in {info.folder}")
    for kind, facts in info.description["training"].items():
        held = facts["held_out"]
        print(
            f"  {kind}: held-out loss {held['base']['loss']:.4f} (base) → "
            f"{held['adapted']['loss']:.4f} (adapted), {facts['steps']} steps in "
            f"{facts['seconds']:.1f} s, {facts['trainable_parameters']:,} trainable parameters, "
            f"KL weight {facts['kl_weight']:.3f}"
        )
    print(f"  card: {info.folder / 'CARD.md'}")
    return 0


def _run_adapters(args: argparse.Namespace) -> int:
    from livekomp.models import checkpoint, lora

    adapters_dir = _adapters_dir(args)
    checkpoints_dir = args.checkpoints or checkpoint.DEFAULT_DIR
    if args.adapters_command == "merge":
        info = lora.read_style(args.name, adapters_dir)
        written = lora.merge_style(info, checkpoints_dir, args.out)
        for kind, path in written.items():
            print(f"  {kind}: {path}")
        if "onnx" not in written and "melody" in info.targets:
            print("  (no ONNX export: pip install 'livekomp[onnx]' for it)")
        print(f"merged {info.name!r}: play it with --checkpoints {args.out}")
        return 0
    found = lora.list_styles(adapters_dir)
    if not found:
        print(f"no style adapters in {adapters_dir}")
        return 0
    base_sha = {}
    for kind in lora.KINDS:
        with contextlib.suppress(checkpoint.CheckpointError):  # listed as "OTHER base models"
            base_sha[kind] = checkpoint.read_description(kind, checkpoints_dir)["sha256"]
    for entry in found:
        if isinstance(entry, tuple):
            print(f"{entry[0]}: unusable: {entry[1]}")
            continue
        print(_style_line(entry, base_sha))
    return 0


def _style_line(info, base_sha: dict[str, str]) -> str:
    """One `adapters list` line: name, targets, rank, data, held-out loss, fit to the base."""
    facts = info.description
    data = facts.get("data", {})
    losses = ", ".join(
        f"{kind} {t['held_out']['base']['loss']:.3f}→{t['held_out']['adapted']['loss']:.3f}"
        for kind, t in facts.get("training", {}).items()
    )
    fits = all(base_sha.get(kind) == info.base_sha(kind) for kind in info.targets)
    return (
        f"{info.name}: {'+'.join(info.targets)}, rank {info.rank}, alpha {info.alpha:g}; "
        f"{len(data.get('files_used', []))} files, {data.get('notes', '?')} notes; "
        f"held-out loss {losses or '?'}; "
        + ("fits these base models" if fits else "made for OTHER base models: it will be refused")
    )


COMMANDS = {
    "rehearse": _run_rehearse,
    "generate": _run_generate,
    "serve": _run_serve,
    "ports": _run_ports,
    "layout": _run_layout,
    "learn": _run_learn,
    "finetune": _run_finetune,
    "adapters": _run_adapters,
    "bench": _run_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_drop_python_osc_warnings)
    try:
        return COMMANDS[args.command](args)
    except BaseException as exc:
        if _interrupted(exc):
            print("livekomp: interrupted", file=sys.stderr)
            return 130
        problems = _user_problems(exc) if isinstance(exc, Exception) else None
        if problems is None:
            raise
        for problem in problems:
            print(f"livekomp: error: {problem}", file=sys.stderr)
        return 2


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` is Ctrl-C: a KeyboardInterrupt, or an exception group (trio raises one out
    of a nursery, nested or not) of KeyboardInterrupts and the cancellations they caused."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if not isinstance(exc, BaseExceptionGroup):
        return False
    _, others = exc.split((KeyboardInterrupt, trio.Cancelled))
    return others is None and exc.subgroup(KeyboardInterrupt) is not None


MODEL_ERRORS = (
    ("livekomp.models.checkpoint", "CheckpointError"),
    ("livekomp.models.runtime", "RuntimeUnavailable"),
    ("livekomp.models.lora", "AdapterError"),
    ("livekomp.models.finetune", "FinetuneError"),
    ("livekomp.models.midi_import", "MidiImportError"),
)


def _user_problems(exc: BaseException) -> list[str] | None:
    """The messages of errors a user can fix (bad file, busy port, missing JACK), or None if
    `exc` holds anything else, which is a bug and keeps its traceback."""
    from livekomp.composer import StyleUnavailable
    from livekomp.config import ConfigError
    from livekomp.dispatch.dispatcher import DispatcherError
    from livekomp.inputs.mapping import MappingError
    from livekomp.inputs.setlist import SetlistError
    from livekomp.midiports import MidiPortError
    from livekomp.outputs.audio import AudioError
    from livekomp.voice.lines import LinesError

    # DispatcherError: the MIDI sender failed mid-set (a port vanished); it released the notes
    # and its own traceback is already in the log.
    user_errors = (
        ConfigError,
        MappingError,
        SetlistError,
        MidiPortError,
        OSError,
        DispatcherError,
        LinesError,
        AudioError,
        StyleUnavailable,
    )
    # The model commands' errors: their modules import torch, so each is looked up only once its
    # module is loaded (no exception of a class exists before its module is imported).
    for module, name in MODEL_ERRORS:
        error_type = getattr(sys.modules.get(module), name, None)
        if error_type is not None:
            user_errors += (error_type,)
    if isinstance(exc, BaseExceptionGroup):
        found = [_user_problems(inner) for inner in exc.exceptions]
        if any(problems is None for problems in found):
            return None
        return [problem for problems in found if problems for problem in problems]
    if isinstance(exc, user_errors):
        return [str(exc)]
    return None


if __name__ == "__main__":
    sys.exit(main())
