"""The voice: text to speech offline (time to first audio, real-time factor, cache hits) and,
live, the time from `/livekomp/say` to the first audible sample heard on the JACK server.

    python -m tools.bench voice [--repeats 5] [--live-lines 6] [--bpm 120]
                                [--voice piper|espeak-ng] [--json FILE]

`--live-lines 0` skips the live run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tools.peers import Serve

VOICE_TEXTS = {
    "short": "And then, the sun.",
    "medium": "Before the light, there is only the long night.",
    "long": (
        "Grey at the edges, something stirs. The night lets go, slowly, one colour at a time. "
        "And when the morning comes, it comes all at once."
    ),
}


def bench_voice_offline(repeats: int) -> list[dict]:
    """Per backend and text: time to first audio (the first sentence rendered), the whole
    line's render time, its real-time factor (render time / audio length) and the cost of a
    cache hit, medians of `repeats` renders."""
    import logging
    import statistics

    from livekomp.voice.prosody import Prosody
    from livekomp.voice.text import clean_line
    from livekomp.voice.tts import Speaker, VoiceSpec, finish, load_backend

    logging.disable(logging.WARNING)
    results = []
    for name in ("piper", "espeak-ng"):
        started_s = time.perf_counter()
        backend = load_backend(name, VoiceSpec(name, None))
        load_s = time.perf_counter() - started_s
        for label, text in VOICE_TEXTS.items():
            sentences = clean_line(text)
            first_s, whole_s, hit_s = [], [], []
            duration_s = 0.0
            for i in range(repeats):
                prosody = Prosody(rate=1.0 + 0.001 * i)  # a new cache key each time
                started_s = time.perf_counter()
                samples, rate = backend.synthesize(sentences[0], prosody)
                finish(samples, rate, prosody.volume, 48_000)
                first_s.append(time.perf_counter() - started_s)
                speaker = Speaker([backend])
                started_s = time.perf_counter()
                speech = speaker.speak(sentences, prosody)
                whole_s.append(time.perf_counter() - started_s)
                duration_s = speech.duration_s
                started_s = time.perf_counter()
                speaker.speak(sentences, prosody)
                hit_s.append(time.perf_counter() - started_s)
            whole = statistics.median(whole_s)
            results.append(
                {
                    "backend": name,
                    "load_s": load_s,
                    "text": label,
                    "chars": len(text),
                    "sentences": len(sentences),
                    "audio_s": duration_s,
                    "first_audio_ms": statistics.median(first_s) * 1e3,
                    "render_ms": whole * 1e3,
                    "real_time_factor": whole / duration_s,
                    "cache_hit_us": statistics.median(hit_s) * 1e6,
                    "render_over_hit": whole / statistics.median(hit_s),
                }
            )
    return results


def format_voice_offline(results: list[dict]) -> str:
    lines = [
        "backend    text    chars audio s  first audio ms  render ms    RTF  cache hit µs"
        "  render/hit"
    ]
    lines += [
        f"{r['backend']:<10} {r['text']:<7} {r['chars']:>5} {r['audio_s']:>7.2f}"
        f" {r['first_audio_ms']:>15.1f} {r['render_ms']:>10.1f} {r['real_time_factor']:>6.3f}"
        f" {r['cache_hit_us']:>13.1f} {r['render_over_hit']:>11.0f}"
        for r in results
    ]
    loads = {r["backend"]: r["load_s"] for r in results}
    lines.append("load: " + ", ".join(f"{name} {s * 1e3:.0f} ms" for name, s in loads.items()))
    return "\n".join(lines)


def bench_voice_live(lines: int, bpm: float, voice: str) -> dict:
    """Run `livekomp serve --audio-out system` on the JACK server, send `lines` lines with
    oscsend at odd moments, and record the server's audio and MIDI clock with a JACK client.
    For each line: the time from the OSC message to the first audible sample (heard), split
    into rendering and waiting for the bar line (the server's own account, in its summary),
    and how far the heard start is from the bar line's first MIDI clock tick."""
    import random
    import statistics
    import subprocess
    import tempfile

    import jack
    import numpy as np

    folder = Path(tempfile.mkdtemp(prefix="livekomp-bench-voice-"))
    client = jack.Client(f"lkbenchvoice{os.getpid()}", no_start_server=True)
    rate = client.samplerate
    audio_in = client.inports.register("audio")
    midi_in = client.midi_inports.register("midi")
    blocks: list[tuple[int, np.ndarray]] = []
    midi: list[tuple[int, bytes]] = []

    @client.set_process_callback
    def process(frames: int) -> None:
        base = client.last_frame_time
        blocks.append((base, audio_in.get_array().copy()))
        for offset, data in midi_in.incoming_midi_events():
            midi.append((base + offset, bytes(data)))

    client.activate()
    sent: list[int] = []
    serve = Serve(
        folder,
        "--bpm",
        str(bpm),
        "--audio-out",
        "system",
        "--voice",
        voice,
        "--no-responses",
        record=None,
    )
    osc_port = serve.osc_port
    try:
        ready = serve.wait_ready(timeout_s=60)
        client.connect(str(ready["midi_out"]), midi_in.name)
        audio_port = client.get_ports("PortAudio", is_audio=True, is_output=True)[0].name
        client.connect(audio_port, audio_in.name)
        chooser = random.Random(1)
        bar_s = 4 * 60 / bpm
        for i in range(lines):
            time.sleep(chooser.uniform(0.5, 1.5) * bar_s)
            sent.append(client.frame_time)
            text = list(VOICE_TEXTS.values())[i % 2] + f" Line {i + 1}."
            subprocess.run(["oscsend", "127.0.0.1", str(osc_port), "/livekomp/say", "s", text])
            time.sleep(3.5 * bar_s)  # past its bar line and its end
    finally:
        serve.stop(timeout_s=20)
        client.deactivate()
        client.close()
    summary = json.loads(serve.summary_path.read_text())
    spoken = [line for line in summary["lines"] if "backend" in line]
    first = blocks[0][0]
    audio = np.zeros(max(f + len(b) for f, b in blocks) - first, np.float32)
    for frame, block in blocks:
        audio[frame - first : frame - first + len(block)] = block
    ticks, started = [], False
    for frame, data in midi:
        if data[0] == 0xFA:
            started, ticks = True, []
        elif data[0] == 0xF8 and started:
            ticks.append(frame)
    # Number ticks by the grid, not by count: a cycle the Python recorder missed loses a tick.
    period = rate * 60 / (bpm * 24)  # the tempo asked for (`tools.bench clock` checks it)
    bar_frames = [f for f in ticks if round((f - ticks[0]) / period) % 96 == 0]
    results = []
    for i, (sent_frame, line) in enumerate(zip(sent, spoken, strict=False)):
        end = sent[i + 1] if i + 1 < len(sent) else first + len(audio)
        window = np.abs(audio[sent_frame - first : end - first])
        loud = np.flatnonzero(window > 2e-3)
        if not len(loud):
            continue
        onset = sent_frame + int(loud[0])
        nearest = min(bar_frames, key=lambda f: abs(f - onset)) if bar_frames else onset
        results.append(
            {
                "say_to_heard_ms": (onset - sent_frame) / rate * 1e3,
                "render_ms": line["render_s"] * 1e3,
                "wait_for_bar_ms": line["wait_s"] * 1e3,
                "cached": line["cached"],
                "heard_minus_bar_line_ms": (onset - nearest) / rate * 1e3,
            }
        )

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in results]
        return {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }

    keys = ("say_to_heard_ms", "render_ms", "wait_for_bar_ms", "heard_minus_bar_line_ms")
    return {
        "bpm": bpm,
        "voice": voice,
        "lines": results,
        "summary": {key: stats(key) for key in keys} if results else {},
        "audio_out": summary.get("audio_out"),
    }


def format_voice_live(result: dict) -> str:
    out = [
        f"live: {len(result['lines'])} lines at {result['bpm']:g} BPM ({result['voice']}), "
        "/livekomp/say → first audible sample, heard by a JACK client"
    ]
    for key, label in (
        ("say_to_heard_ms", "say → heard"),
        ("render_ms", "  rendering"),
        ("wait_for_bar_ms", "  waiting for the bar line"),
        ("heard_minus_bar_line_ms", "heard − bar line's first clock tick"),
    ):
        s = result["summary"][key]
        out.append(
            f"{label:<36} median {s['median']:8.1f}  min {s['min']:8.1f}  max {s['max']:8.1f} ms"
        )
    return "\n".join(out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--live-lines", type=int, default=6, help="0: skip the live run")
    parser.add_argument("--bpm", type=float, default=120.0)
    parser.add_argument("--voice", default="piper", choices=["piper", "espeak-ng"])


def run(args: argparse.Namespace) -> dict:
    result: dict = {"offline": bench_voice_offline(args.repeats)}
    if args.live_lines:
        result["live"] = bench_voice_live(args.live_lines, args.bpm, args.voice)
    return result


def format_voice(result: dict) -> str:
    parts = [format_voice_offline(result["offline"])]
    if "live" in result:
        parts.append(format_voice_live(result["live"]))
    return "\n".join(parts)
