"""Live: wires the services of the data flow and owns the root nursery.

    OSC, MIDI in ─► control router ─► mood ─► composer ─► performer ─► dispatcher ─► MIDI out
                           │                     clock ─────────────────────▲
                           └─► voice (say, responses) ─► on a bar line ─► audio out

Every way out — Ctrl-C, SIGTERM, an exception anywhere — ends in the same shielded cleanup that
releases every sounding note (note-offs, then CC 123 on every channel used) and sends MIDI Stop,
and closes the audio output, silencing any line still playing. The MIDI sender is a child
process that releases the notes by itself if this process dies.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import trio
from rich.console import Console

from livekomp import __version__
from livekomp.clock.clock import MasterClock
from livekomp.clock.follow import FollowConfig, MidiClockFollower, serve_midi_clock_in
from livekomp.clock.link import LinkFollower, link_available
from livekomp.composer import (
    ComposerService,
    PhraseBuffer,
    build_composer,
    loaded_styles,
    refuse_styles,
)
from livekomp.config import ConfigError, LiveConfig
from livekomp.dispatch.dispatcher import DispatcherError
from livekomp.dispatch.sender import ProcessDispatcher
from livekomp.files import write_json_atomically
from livekomp.inputs.events import ControlEvent
from livekomp.inputs.guard import AllowList, SourceGuard, local_subnets
from livekomp.inputs.mapping import load_mapping
from livekomp.inputs.midi import serve_midi_in
from livekomp.inputs.osc import check_osc_port, serve_osc
from livekomp.inputs.stats import InputStats
from livekomp.midiports import api_name, choose_api
from livekomp.mood import MoodState
from livekomp.music.phrase import BASE_STYLE
from livekomp.music.rules import RuleComposer
from livekomp.music.theory import parse_key
from livekomp.outputs.audio import AudioError, AudioOut, open_audio_out
from livekomp.outputs.midi import OutputSpec
from livekomp.outputs.midifile import RecordSpec
from livekomp.outputs.osc import parse_target, serve_feedback
from livekomp.outputs.report import RunReport
from livekomp.performer import PerformerConfig
from livekomp.session import BAR_LINE_LEGEND, FollowHooks, Session, VoiceParts
from livekomp.speech import Speech
from livekomp.status import RecentWarnings, StatusView, serve_status
from livekomp.voice.lines import load_responses
from livekomp.voice.service import VoiceConfig
from livekomp.voice.tts import OUTPUT_RATE, VoiceSpec, open_speaker

log = logging.getLogger("livekomp")


async def _stop_on_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: stopping, releasing all notes", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


class ReadyFile:
    """`--ready-file`: the server's state as one JSON object, rewritten whole at each step, so a
    script or a test waits on data, not on log text.

    `state` runs "port_open" (the MIDI output exists: connect it now to hear the first bar;
    `midi_out`, `sender_pid`), then "ready" (every service runs; `osc_port`, `midi_in`, and
    `clock_in` when following), then "stopped" (every note released, files written). Every
    state carries `pid` and `livekomp`. A file left from an earlier run is removed at start.
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.fields: dict[str, object] = {"livekomp": __version__, "pid": os.getpid()}
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def say(self, state: str, **fields: object) -> None:
        self.fields.update(fields, state=state)
        if self.path is not None:
            write_json_atomically(self.path, self.fields)


class _LogOnly:
    """The line sink when there is no audio output: lines are placed and logged, not heard."""

    def play_at(self, speech: Speech, at_s: float) -> None:
        pass

    def silence(self) -> None:
        pass


async def _open_voice_out(config: LiveConfig, stack: AsyncExitStack) -> AudioOut | None:
    """The voice's audio output; a device the user named must open, the default may not."""
    try:
        return await stack.enter_async_context(
            open_audio_out(config.audio_out, level_db=config.voice_level_db)
        )
    except AudioError as exc:
        if config.audio_out is not None:
            raise
        log.warning("%s; spoken lines will be logged, not heard", exc)
        return None


async def _start_voice(
    config: LiveConfig, stack: AsyncExitStack
) -> tuple[VoiceParts | None, AudioOut | None]:
    if config.voice == "none":
        log.info("voice off (--voice none)")
        return None, None
    responses = load_responses(config.lines) if config.responses else None
    audio = await _open_voice_out(config, stack)
    spec = VoiceSpec(
        config.voice,
        None if config.voice_fallback == "none" else config.voice_fallback,
        config.voice_model,
        config.voice_config,
        seed=config.seed,
    )
    rate = audio.sample_rate if audio is not None else OUTPUT_RATE
    speaker = await trio.to_thread.run_sync(partial(open_speaker, spec, sample_rate=rate))
    if audio is not None:
        log.info("voice: %s → %s at %d Hz", speaker.voice_id, audio.name, audio.sample_rate)
    parts = VoiceParts(
        speaker,
        VoiceConfig(align=config.align, duck=config.duck),
        audio if audio is not None else _LogOnly(),
        responses,
    )
    return parts, audio


def osc_guard(config: LiveConfig, stats: InputStats) -> SourceGuard:
    """Who may send OSC: `--osc-allow`, else the subnet of the interface OSC listens on."""
    host = socket.gethostbyname(config.osc_host)  # resolvable: check_osc_port bound it
    if config.osc_allow:
        allow = AllowList.from_entries(config.osc_allow)
    else:
        allow = AllowList(local_subnets(host))
    if not ipaddress.ip_address(host).is_loopback:
        log.info(
            "OSC accepted from %s; at most %g datagrams/s per source (burst %d)",
            allow.describe(),
            config.osc_rate_hz,
            config.osc_burst,
        )
    return SourceGuard(allow, stats, rate_hz=config.osc_rate_hz, burst=config.osc_burst)


async def serve_live(config: LiveConfig, *, status_console: Console | None = None) -> None:
    """Run the live server until Ctrl-C or SIGTERM; with `status_console`, draw the status view
    on it (`livekomp.status`)."""
    tonic = parse_key(config.key)
    mapping = load_mapping(config.mappings)
    check_osc_port(config.osc_host, config.osc_port)
    api = choose_api(config.midi_api)
    clock = MasterClock(config.bpm)
    record = None
    if config.record:
        record = RecordSpec(config.record, beats_per_bar=config.beats_per_bar, bpm=config.bpm)
    # The sender runs in its own process: composer work here can never delay a send (the GIL),
    # and even if this process is killed, the sender releases every note.
    dispatcher = ProcessDispatcher(
        clock,
        OutputSpec.rtmidi(config.midi_out, api=api),
        record=record,
        spin_s=config.spin_us * 1e-6,
        rt_priority=config.rt_priority,
        nudge_s=config.nudge_ms * 1e-3,
    )
    if config.clock == "link" and not link_available():
        raise ConfigError(
            "clock: 'link' needs LinkPython-extern: pip install -c constraints.txt "
            "LinkPython-extern"
        )
    follow = config.clock != "internal"
    stats = InputStats()
    guard = osc_guard(config, stats)
    report = RunReport(
        {
            "livekomp": __version__,
            "mode": "live",
            "seed": config.seed,
            "bpm": config.bpm,
            "beats_per_bar": config.beats_per_bar,
            "key": config.key,
        }
    )
    mood = MoodState(slew_s=config.slew_s)
    settings = config.composer_settings()
    primary, unavailable = await trio.to_thread.run_sync(build_composer, settings, config.seed)
    neural = not isinstance(primary, RuleComposer)
    styles = loaded_styles(primary)
    refused = refuse_styles(primary, settings.styles)
    style = config.initial_style if config.initial_style in styles else BASE_STYLE
    if styles:
        log.info("styles loaded: %s; playing %s", ", ".join(styles), style)

    def heading() -> tuple[float, float]:
        target = mood.target()
        return target.valence, target.arousal

    composer = ComposerService(
        primary,
        RuleComposer(config.seed) if neural else None,
        budget_s=settings.budget_ms / 1000,
        in_thread=neural,
        buffer=PhraseBuffer() if neural else None,
        heading=heading,
        unavailable=unavailable,
        refused_styles=refused,
        log_every_bars=16,
    )
    stack = AsyncExitStack()
    voice_parts, audio = await _start_voice(config, stack)

    # A clock that follows a master: the master starts, stops and keeps the tempo. The router
    # asks the follower, which exists once the performer it drives does.
    follower: MidiClockFollower | None = None
    link_follower: LinkFollower | None = None

    def can_start() -> str | None:
        if follower is not None and not follower.running:
            return "the MIDI clock master is stopped; start it there"
        return None

    def ignore_tempo(bpm: float) -> None:
        log.info("tempo %.1f BPM ignored: the MIDI clock master keeps the tempo", bpm)

    def link_tempo(bpm: float) -> None:
        assert link_follower is not None
        link_follower.propose_tempo(bpm)

    def link_transport(playing: bool) -> None:
        assert link_follower is not None
        link_follower.propose_playing(playing)

    hooks = {
        "midi": FollowHooks(can_start=can_start, on_tempo=ignore_tempo),
        "link": FollowHooks(on_tempo=link_tempo, on_transport=link_transport),
    }.get(config.clock)
    session = Session(
        clock=clock,
        dispatcher=dispatcher,
        composer=composer,
        mood=mood,
        report=report,
        config=PerformerConfig(
            beats_per_bar=config.beats_per_bar,
            tonic=tonic,
            lookahead_beats=config.lookahead_beats,
            # A follower never sends clock: it would echo the master's clock back to it.
            clock_out=config.clock_out and not follow,
            follow=follow,
        ),
        style=style,
        styles=styles,
        voice=voice_parts,
        follow=hooks,
        log_music=True,
    )
    performer, voice = session.performer, session.voice
    if config.clock == "midi":
        follower = MidiClockFollower(
            clock,
            config=FollowConfig(timeout_beats=config.clock_timeout_beats),
            on_start=performer.start,
            on_stop=session.stop_with_master,
            trace=[] if config.clock_trace else None,
        )
    if config.clock == "link":
        link_follower = LinkFollower(
            clock,
            quantum_beats=config.beats_per_bar,
            bpm=config.bpm,
            on_start=performer.start,
            on_stop=session.stop_with_master,
        )

    send, receive = trio.open_memory_channel[ControlEvent](256)
    ready = ReadyFile(config.ready_file)
    log.info(BAR_LINE_LEGEND)
    warnings = None
    if status_console is not None:
        warnings = RecentWarnings()
        logging.getLogger().addHandler(warnings)

    def clock_source() -> str:
        if follower is not None:
            return "MIDI clock: " + ("following" if follower.running else "stopped or lost")
        if link_follower is not None:
            return f"Link, {link_follower.peers} peers"
        return "internal"

    try:
        await trio.to_thread.run_sync(dispatcher.start)
    except BaseException:
        with trio.CancelScope(shield=True):
            await stack.aclose()
        raise
    log.info(
        "livekomp %s: MIDI sender process %s%s",
        __version__,
        dispatcher.pid,
        " (SCHED_FIFO)" if dispatcher.realtime else "",
    )
    log.info(
        "MIDI output open: %s (%s, %s)",
        dispatcher.port_label,
        api_name(api),
        "virtual port" if config.midi_out is None else "existing port",
    )
    ready.say("port_open", midi_out=dispatcher.port_label, sender_pid=dispatcher.pid)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
            await nursery.start(session.router.serve, receive)
            await nursery.start(composer.serve_buffer)
            osc_port = await nursery.start(
                partial(
                    serve_osc,
                    config.osc_host,
                    config.osc_port,
                    mapping,
                    send.clone(),
                    stats,
                    guard=guard,
                )
            )
            midi_in = await nursery.start(
                partial(serve_midi_in, config.midi_in, mapping, send.clone(), stats, api=api)
            )
            log.info("MIDI in: %s", midi_in)
            send.close()
            clock_in = None
            if follower is not None:
                clock_in = await nursery.start(
                    partial(serve_midi_clock_in, config.midi_clock_in, follower, api=api)
                )
                log.info("MIDI clock in: %s (livekomp follows it)", clock_in)
            if link_follower is not None:
                await nursery.start(link_follower.serve)
            if voice is not None:
                await nursery.start(voice.serve)
            await nursery.start(partial(performer.serve, autostart=not follow))
            if config.feedback is not None:
                await nursery.start(
                    partial(
                        serve_feedback,
                        parse_target(config.feedback),
                        session.feedback,
                        rate_hz=config.feedback_rate_hz,
                    )
                )
            log.info(
                "listening for OSC on %s:%s; %s in %s, %d/4",
                config.osc_host,
                osc_port,
                {"midi": "following the MIDI clock", "link": "following the Link session"}.get(
                    config.clock, f"playing at {config.bpm:.1f} BPM"
                ),
                config.key,
                config.beats_per_bar,
            )
            ready.say("ready", osc_port=osc_port, midi_in=midi_in, clock_in=clock_in)
            if status_console is not None:
                view = StatusView(
                    session, stats, key=config.key, clock_source=clock_source, warnings=warnings
                )
                await nursery.start(serve_status, view, status_console)
    finally:
        with trio.CancelScope(shield=True):
            await stack.aclose()  # closes the audio output: no line goes on after the music
            try:
                # Releases every sounding note (note-offs, CC 123), sends MIDI Stop (not when
                # following: the master's transport is the master's), writes the recording.
                await trio.to_thread.run_sync(partial(dispatcher.close, send_stop=not follow))
            except DispatcherError:
                log.exception("the MIDI sender had failed")
            if record is not None:
                log.info("recorded %s", record.path)
            timing = dispatcher.summary()
            if timing.get("count"):
                log.info(
                    "send timing: %d messages, late by p50 %.3f / p99 %.3f / max %.3f ms",
                    timing["count"],
                    timing["p50_ms"],
                    timing["p99_ms"],
                    timing["max_ms"],
                )
            if follower is not None and config.clock_trace:
                write_json_atomically(
                    config.clock_trace,
                    {
                        "fields": ["arrival_s", "status", "tick_count", "running"],
                        "messages": follower.trace,
                        **follower.summary(),
                    },
                )
            if config.summary:
                if follower is not None:
                    report.extra["clock_in"] = follower.summary()
                report.extra["inputs"] = stats.as_dict()
                report.extra["send_timing"] = timing
                report.extra.update(session.summary())
                if voice is not None:
                    report.extra["voice"] = voice.summary()
                if audio is not None:
                    report.extra["audio_out"] = audio.summary()
                report.write(Path(config.summary))
            counts = {
                f"{transport} {reason}": n
                for transport, reasons in stats.as_dict().items()
                for reason, n in reasons.items()
                if n
            }
            log.info("stopped after %d bars; inputs: %s", performer.bars_total, counts or "none")
            log.info("composer: %s", composer.health())
            ready.say("stopped")
            if warnings is not None:
                logging.getLogger().removeHandler(warnings)
