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

import logging
import signal
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import trio

from livekomp import __version__
from livekomp.composer import ComposerService, PhraseBuffer, build_composer
from livekomp.config import LiveConfig
from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.mapping import load_mapping
from livekomp.inputs.midi import serve_midi_in
from livekomp.inputs.osc import serve_osc
from livekomp.inputs.stats import InputStats
from livekomp.midiports import api_name, choose_api
from livekomp.mood import Mood, MoodState
from livekomp.music.phrase import ComposedBar
from livekomp.music.rules import RuleComposer
from livekomp.music.theory import parse_key
from livekomp.outputs.audio import AudioError, AudioOut, open_audio_out
from livekomp.performer import ControlRouter, Performer, PerformerConfig
from livekomp.report import RunReport
from livekomp.timing.clock import MasterClock
from livekomp.timing.dispatcher import DispatcherError
from livekomp.timing.sender import OutputSpec, ProcessDispatcher, RecordSpec
from livekomp.voice.lines import load_responses
from livekomp.voice.service import SpokenLine, VoiceConfig, VoiceService
from livekomp.voice.tts import OUTPUT_RATE, Speech, VoiceSpec, open_speaker

log = logging.getLogger("livekomp")


def _log_bar(bar: ComposedBar, mood: Mood) -> None:
    counts = " ".join(f"{part.value[0]}{len(notes)}" for part, notes in bar.parts.items())
    log.info(
        "bar %4d | v %+.2f a %+.2f | %-10s %-6s | %s | %s",
        bar.index,
        mood.valence,
        mood.arousal,
        bar.mode,
        bar.chord,
        bar.composer,
        counts,
    )


async def _stop_on_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: stopping, releasing all notes", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


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
    config: LiveConfig,
    clock: MasterClock,
    mood: MoodState,
    report: RunReport,
    stack: AsyncExitStack,
) -> tuple[VoiceService | None, AudioOut | None]:
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

    def on_spoken(line: SpokenLine) -> None:
        report.on_spoken(line.as_dict())

    voice = VoiceService(
        speaker,
        clock,
        mood,
        VoiceConfig(align=config.align, duck=config.duck),
        beats_per_bar=config.beats_per_bar,
        sink=audio if audio is not None else _LogOnly(),
        responses=responses,
        on_spoken=on_spoken,
    )
    if audio is not None:
        log.info("voice: %s → %s at %d Hz", speaker.voice_id, audio.name, audio.sample_rate)
    return voice, audio


async def serve_live(config: LiveConfig) -> None:
    """Run the live server until Ctrl-C or SIGTERM."""
    tonic = parse_key(config.key)
    mapping = load_mapping(config.mappings)
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
    )
    stats = InputStats()
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
        log_every_bars=16,
    )
    stack = AsyncExitStack()
    voice, audio = await _start_voice(config, clock, mood, report, stack)

    def on_bar(bar: ComposedBar, bar_mood: Mood) -> None:
        report.on_bar(bar, bar_mood)
        _log_bar(bar, bar_mood)

    performer = Performer(
        clock,
        dispatcher,
        composer,
        mood,
        PerformerConfig(
            beats_per_bar=config.beats_per_bar,
            tonic=tonic,
            lookahead_beats=config.lookahead_beats,
            clock_out=config.clock_out,
        ),
        on_bar=on_bar,
        duck=voice.duck_at if voice is not None else None,
    )

    if voice is not None:
        voice.playing = lambda: performer.playing

    def on_line(kind: str, event: ControlEvent) -> None:
        log.info("%s: %r", kind, event.value)
        if voice is not None and event.param is Param.SAY:
            voice.on_control(event)  # the voice reports the line once it is placed
        else:
            report.on_line(kind, event)

    on_mood = voice.on_control if voice is not None and voice.responses is not None else None
    router = ControlRouter(
        performer,
        on_line=on_line,
        on_mood=on_mood,
        on_silence=voice.silence if voice is not None else None,
    )
    send, receive = trio.open_memory_channel[ControlEvent](256)
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
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
            await nursery.start(router.serve, receive)
            await nursery.start(composer.serve_buffer)
            osc_port = await nursery.start(
                partial(serve_osc, config.osc_host, config.osc_port, mapping, send.clone(), stats)
            )
            midi_in = await nursery.start(
                partial(serve_midi_in, config.midi_in, mapping, send.clone(), stats, api=api)
            )
            log.info("MIDI in: %s", midi_in)
            send.close()
            if voice is not None:
                await nursery.start(voice.serve)
            await nursery.start(performer.serve)
            log.info(
                "listening for OSC on %s:%s; playing at %.1f BPM in %s, %d/4",
                config.osc_host,
                osc_port,
                config.bpm,
                config.key,
                config.beats_per_bar,
            )
    finally:
        with trio.CancelScope(shield=True):
            await stack.aclose()  # closes the audio output: no line goes on after the music
            try:
                # Releases every sounding note (note-offs, CC 123), sends MIDI Stop, writes
                # the recording.
                await trio.to_thread.run_sync(partial(dispatcher.close, send_stop=True))
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
            if config.summary:
                report.extra["inputs"] = stats.as_dict()
                report.extra["composer"] = composer.summary()
                report.extra["controls_not_understood"] = router.unhandled
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
            log.info("stopped after %d bars; inputs: %s", performer.bars_played, counts or "none")
            log.info("composer: %s", composer.health())
