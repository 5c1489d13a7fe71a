"""Rehearsal: the live pipeline, headless, in virtual time.

The same services as on stage — setlist input, control router, mood, composer, performer,
dispatcher, voice — run under `trio.testing.MockClock`, so a set renders as fast as the computer
allows and, with models and voices inline, identically for the same seed. With `audio`, the
set's MIDI is also rendered to sound and the spoken lines mixed in at their bar lines
(`set.wav`). The files appear together when everything is rendered, or not at all: an error or
Ctrl-C on the way leaves none of them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import trio
import trio.testing

from livekomp import __version__
from livekomp.clock.clock import MasterClock
from livekomp.composer import (
    ComposerService,
    ComposerSettings,
    build_composer,
    loaded_styles,
    refuse_styles,
)
from livekomp.dispatch.dispatcher import VirtualDispatcher
from livekomp.dispatch.tracked import TrackedOutput
from livekomp.files import StagedFiles
from livekomp.inputs.events import ControlEvent, Param
from livekomp.inputs.setlist import Setlist, serve_setlist
from livekomp.mood import Mood, MoodState
from livekomp.music.phrase import BASE_STYLE, adapters
from livekomp.music.theory import parse_key
from livekomp.outputs.html_report import write_html_report
from livekomp.outputs.midifile import MidiFileRecorder
from livekomp.outputs.report import RunReport
from livekomp.performer import PerformerConfig
from livekomp.session import Session, VoiceParts
from livekomp.speech import Speech
from livekomp.voice.lines import Responses
from livekomp.voice.service import VoiceConfig
from livekomp.voice.tts import VoiceSpec, open_speaker

log = logging.getLogger("livekomp.rehearsal")


@dataclass(frozen=True, slots=True)
class RehearsalResult:
    midi_path: Path
    summary_path: Path
    summary: dict[str, object]
    wav_path: Path | None = None
    wav_described: str | None = None  # for people: which synth, the loudness, the true peak


@dataclass(frozen=True, slots=True)
class AudioOptions:
    """What `--audio` renders with: the voice, the SoundFont, levels and responses."""

    voice: VoiceSpec = field(default_factory=VoiceSpec)
    soundfont: Path | None = None  # None: the first General MIDI bank found (else built-in)
    builtin_synth: bool = False  # skip fluidsynth even when it is there
    voice_level_db: float = 0.0
    duck: float = 1.0
    align: str = "bar"
    responses: Responses | None = None  # answer mood words with lines from a lines file


class SpeechTrack:
    """A rehearsal's line sink: keeps each line at its time, for the mix."""

    def __init__(self) -> None:
        self.clips: list[tuple[float, Speech]] = []

    def play_at(self, speech: Speech, at_s: float) -> None:
        self.clips.append((at_s, speech))

    def silence(self) -> None:
        """Nothing to do: a setlist has no stop or panic cue (the router is never told to)."""


def predicted_say_moods(setlist: Setlist, initial: Mood | None = None) -> list[tuple[str, Mood]]:
    """Each `say` cue with the mood target it will be spoken in: the cues applied in order, as
    the rehearsal will (a line is the last event of its cue), so they can be rendered ahead."""
    mood = MoodState(initial)
    lines = []
    for cue in setlist.cues:
        for event in cue.events:
            if event.param is Param.SAY:
                lines.append((str(event.value), mood.target()))
            else:
                mood.apply(event, 0.0)
    return lines


def rehearse(
    setlist: Setlist,
    out_dir: str | Path,
    *,
    seed: int | None = None,
    lookahead_beats: float = 1.0,
    slew_s: float = 0.3,
    composer: ComposerSettings | None = None,
    initial_mood: Mood | None = None,
    audio: AudioOptions | None = None,
    style: str = BASE_STYLE,
) -> RehearsalResult:
    """Render `setlist` to `out_dir/set.mid` and `out_dir/summary.json` (with `audio`, also
    `out_dir/set.wav`), put in place together once all are rendered; on an error or Ctrl-C none
    of them is written.

    The set starts in `style` (a `BarRequest.style`); the adapters for it and for every style the
    cues name are loaded first. If `style` fails to load, StyleUnavailable is raised before
    anything plays. A cue's style that fails to load is refused in one warning line; its cues are
    dropped and the style before plays on.

    The neural composer runs inline (no budget, no buffer), so the result depends only on the
    setlist, the seed and the checkpoints; so do the voices, rendered inline in cue order.
    """
    seed = seed if seed is not None else (setlist.seed if setlist.seed is not None else 0)
    settings = composer or ComposerSettings()
    wanted = adapters((*settings.styles, style, *setlist.styles))
    primary, unavailable = build_composer(replace(settings, styles=wanted), seed)
    refused = refuse_styles(primary, wanted, required=style)
    voice = None
    if audio is not None:
        speaker = open_speaker(_seeded(audio.voice, seed))
        config = VoiceConfig(align=audio.align, lead_s=0.0, duck=audio.duck, in_thread=False)
        voice = (speaker, config)
    with StagedFiles(out_dir) as files:
        result = trio.run(
            _rehearse,
            setlist,
            files,
            seed,
            lookahead_beats,
            slew_s,
            ComposerService(primary, unavailable=unavailable, refused_styles=refused),
            initial_mood,
            style,
            voice,
            audio,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
        files.commit()
    return result


def _seeded(spec: VoiceSpec, seed: int) -> VoiceSpec:
    return VoiceSpec(
        spec.backend, spec.fallback, spec.model_path, spec.config_path, spec.threads, seed
    )


async def _rehearse(
    setlist: Setlist,
    files: StagedFiles,
    seed: int,
    lookahead_beats: float,
    slew_s: float,
    composer: ComposerService,
    initial_mood: Mood | None,
    style: str,
    voice_parts: tuple | None,
    audio: AudioOptions | None,
) -> RehearsalResult:
    tonic = parse_key(setlist.key)
    clock = MasterClock(setlist.bpm, now_s=trio.current_time)
    recorder = MidiFileRecorder(
        files.stage("set.mid"),
        title=setlist.title,
        beats_per_bar=setlist.beats_per_bar,
        bpm=setlist.bpm,
    )
    recorder.follow_tempo(clock)
    output = TrackedOutput(recorder)
    dispatcher = VirtualDispatcher(clock, output)
    report = RunReport(
        {
            "livekomp": __version__,
            "setlist": setlist.path.name,
            "title": setlist.title,
            "seed": seed,
            "bpm": setlist.bpm,
            "beats_per_bar": setlist.beats_per_bar,
            "bars": setlist.bars,
            "key": setlist.key,
        }
    )
    mood = MoodState(initial_mood, slew_s=slew_s)
    track = SpeechTrack()
    parts = None
    if voice_parts is not None and audio is not None:
        speaker, voice_config = voice_parts
        parts = VoiceParts(speaker, voice_config, track, audio.responses)
    session = Session(
        clock=clock,
        dispatcher=dispatcher,
        composer=composer,
        mood=mood,
        report=report,
        config=PerformerConfig(
            beats_per_bar=setlist.beats_per_bar,
            tonic=tonic,
            lookahead_beats=lookahead_beats,
            clock_out=False,
        ),
        style=style,
        styles=loaded_styles(composer.primary),
        voice=parts,
    )
    voice, performer, router = session.voice, session.performer, session.router
    if voice is not None:
        # Lines known ahead are rendered before the set starts: a cue is then a cache hit.
        voice.prepare(predicted_say_moods(setlist, initial_mood))
    send, receive = trio.open_memory_channel[ControlEvent](math.inf)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.serve)
            await nursery.start(router.serve, receive)
            if voice is not None:
                await nursery.start(voice.serve)

            async def perform(task_status: trio.TaskStatus[None]) -> None:
                await performer.serve(max_bars=setlist.bars, task_status=task_status)
                nursery.cancel_scope.cancel()  # the set is over: end the services

            await nursery.start(perform)
            nursery.start_soon(
                partial(serve_setlist, setlist, clock, send, lookahead_beats=lookahead_beats)
            )
    finally:
        dispatcher.close()
        recorder.close()
    report.extra.update(session.summary())
    wav_path = described = None
    if voice is not None and audio is not None:
        wav_path = files.folder / "set.wav"
        origin_s = clock.time_at(0.0)
        clips = [(at_s - origin_s, speech) for at_s, speech in track.clips]
        figures, described = _write_audio(files.stage("set.wav"), recorder.path, clips, audio)
        report.extra["audio"] = {**figures, "voice": voice.summary()}
    report.write(files.stage("summary.json"))
    write_html_report(
        files.stage("report.html"),
        report.as_dict(),
        report.roll,
        sorted({cue.bar for cue in setlist.cues}),
        audio=wav_path is not None,
    )
    return RehearsalResult(
        files.folder / "set.mid",
        files.folder / "summary.json",
        report.as_dict(),
        wav_path,
        described,
    )


def _write_audio(
    wav_path: Path, midi_path: Path, clips: list[tuple[float, Speech]], audio: AudioOptions
) -> tuple[dict[str, object], str]:
    """Render the music, mix the lines in, write `wav_path`; returns which synth played the
    music with the mix's measured figures (for the summary), and the same in a line for people."""
    from livekomp.outputs.render import find_soundfont, mix, render_music, write_wav

    soundfont = None if audio.builtin_synth else (audio.soundfont or find_soundfont())
    music, source = render_music(midi_path, soundfont)
    mixed = mix(music, clips, voice_level_db=audio.voice_level_db)
    write_wav(wav_path, mixed.samples)
    described = f"music by {source.describe()}; {mixed.describe()}"
    log.debug("set.wav: %s", described)
    figures = {
        "music": source.name,
        "soundfont": str(source.soundfont) if source.soundfont else None,
        **({"fallback": source.fallback} if source.fallback else {}),
        "mix": mixed.figures(),
    }
    return figures, described
