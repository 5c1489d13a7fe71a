"""The `livekomp` command as a user meets it: files written, and clear errors for bad input."""

import errno
import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
import trio

import livekomp.cli
from livekomp.cli import _composer_settings, _parser, _serve_config, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_rehearse_writes_the_files(tmp_path, capsys):
    assert main(["-q", "rehearse", str(EXAMPLES / "storm.toml"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "set.mid").stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["title"] == "Storm waltz" and len(summary["bars"]) == 36
    assert "rehearsed 'Storm waltz': 36 bars" in capsys.readouterr().out


def test_generate_is_deterministic_for_a_seed(tmp_path, capsys):
    def generate(name, seed, *more):
        out = tmp_path / name
        flags = ["--valence", "0.6", "--arousal", "-0.2", "--bars", "4", "--seed", str(seed)]
        assert main(["-q", "generate", *flags, "--out", str(out), "--key", "Eb", *more]) == 0
        return out.read_bytes()

    a, b, c = generate("a.mid", 3), generate("b.mid", 3), generate("c.mid", 4)
    assert a == b and a != c
    midi = mido.MidiFile(tmp_path / "a.mid")
    assert midi.length == pytest.approx(4 * 4 * 60 / 120, abs=0.05)  # four bars at 120 BPM
    assert "generated 4 bars" in capsys.readouterr().out


def test_generate_with_a_corrupt_checkpoint_says_so_and_plays_the_rules(tmp_path, capsys):
    from tests.models.conftest import save_tiny

    checkpoints = save_tiny(tmp_path / "checkpoints")
    (checkpoints / "melody.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "phrase.mid"
    flags = ["--valence", "-0.5", "--arousal", "0.5", "--bars", "2", "--out", str(out)]
    assert main(["-q", "generate", *flags, "--checkpoints", str(checkpoints)]) == 0
    assert out.stat().st_size > 100
    printed = capsys.readouterr().out
    assert "composer: rules — neural unavailable:" in printed
    assert "melody.safetensors: corrupt" in printed


def test_generate_rejects_a_mood_off_the_plane(tmp_path, capsys):
    flags = ["--valence", "1.5", "--arousal", "0", "--out", str(tmp_path / "x.mid")]
    assert main(["generate", *flags]) == 2
    assert "--valence: 1.5 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "x.mid").exists()


def test_a_bad_setlist_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    setlist = tmp_path / "gig.toml"
    setlist.write_text("bars = 4\n[[cue]]\nbar = 2\nvalence = 3\n")
    assert main(["rehearse", str(setlist), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"livekomp: error: {setlist}: cue[0].valence: 3 is outside -1..1" in error
    assert not (tmp_path / "out").exists()


def test_serve_refuses_a_bad_mapping_before_opening_anything(tmp_path, capsys):
    mapping = tmp_path / "faders.toml"
    mapping.write_text('[[cc]]\ncc = 7\nchannel = "any"\ntarget = "valance"\n')
    assert main(["serve", "--mapping", str(mapping)]) == 2
    error = capsys.readouterr().err
    assert "faders.toml" in error and "valance" in error and "cc[0]" in error


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--bpm", "1000"], "bpm: 1000.0 is out of range"), (["--key", "H"], "key: not a key")],
)
def test_serve_refuses_bad_settings(flags, message, capsys):
    assert main(["serve", *flags]) == 2
    assert message in capsys.readouterr().err


def test_serve_config_file_errors_name_the_file_and_key(tmp_path, capsys):
    config = tmp_path / "stage.toml"
    config.write_text("[serve]\nbpm = 100\nosc_prot = 9001\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert f"{config}: serve.osc_prot: unknown setting" in capsys.readouterr().err


def test_serve_without_a_jack_server_says_how_to_start_one(monkeypatch, capsys):
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "livekomp-test-no-such-server")
    assert main(["serve", "--midi-api", "jack"]) == 2
    assert "jackd -d dummy" in capsys.readouterr().err


@pytest.mark.jack
def test_ports_lists_what_jack_has(capsys, jack_server):
    assert main(["ports", "--midi-api", "jack"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MIDI system: jack\ninputs:\n")
    assert "outputs:" in out


def _no_midi_port(monkeypatch):
    """Fail the test if serve gets as far as opening its MIDI output."""

    def start(self):
        raise AssertionError("the MIDI sender was started")

    monkeypatch.setattr("livekomp.dispatch.sender.ProcessDispatcher.start", start)


def test_a_busy_osc_port_is_a_clear_error_before_any_midi_port_opens(capsys, monkeypatch):
    _no_midi_port(monkeypatch)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert main(["-q", "serve", "--midi-api", "jack", "--osc-port", str(port)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"livekomp: error: cannot listen for OSC on 127.0.0.1:{port}: Address already in use "
        "(another program has the port? choose one with --osc-port)"
    ]


def test_a_port_that_needs_root_says_so_before_any_midi_port_opens(capsys, monkeypatch):
    _no_midi_port(monkeypatch)

    class NoPrivilegedPorts(socket.socket):
        def bind(self, address):
            if address[1] < 1024:
                raise PermissionError(errno.EACCES, "Permission denied")
            super().bind(address)

    monkeypatch.setattr("livekomp.inputs.osc.socket.socket", NoPrivilegedPorts)
    assert main(["-q", "serve", "--midi-api", "jack", "--osc-port", "80"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "livekomp: error: cannot listen for OSC on 127.0.0.1:80: Permission denied (ports below "
        "1024 need root; choose one above it with --osc-port, e.g. 9000)"
    ]


def test_style_flags():
    args = _parser().parse_args(
        ["serve", "--style", "reel", "--style", "base", "--style", "hymn", "--adapters", "ad"]
    )
    config = _serve_config(args)
    assert config.styles == ("reel", "base", "hymn") and config.initial_style == "reel"
    assert config.composer_settings().styles == ("reel", "hymn")
    assert config.composer_settings().adapters == "ad"
    assert _serve_config(_parser().parse_args(["serve"])).styles == ()
    for command in (["rehearse", "set.toml", "--out", "o"], ["generate", *MOOD, "--out", "x"]):
        args = _parser().parse_args([*command, "--style", "reel", "--adapters", "ad"])
        assert args.style == "reel" and _composer_settings(args).adapters == "ad"
        assert _parser().parse_args(command).style is None


MOOD = ["--valence", "0", "--arousal", "0"]


@pytest.mark.parametrize("composer", ["neural", "rules"])
@pytest.mark.parametrize("command", ["generate", "rehearse"])
def test_a_style_that_cannot_load_is_an_error_before_anything_plays(
    tmp_path, monkeypatch, command, composer, capsys
):
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    setlist = tmp_path / "gig.toml"
    setlist.write_text("bars = 2\n")
    first = {  # the adapters folder from --adapters, or from $LIVEKOMP_ADAPTERS
        "generate": [
            "generate",
            *MOOD,
            "--out",
            str(tmp_path / "x.mid"),
            "--adapters",
            str(adapters),
        ],
        "rehearse": ["rehearse", str(setlist), "--out", str(tmp_path / "out")],
    }[command]
    monkeypatch.setenv("LIVEKOMP_ADAPTERS", str(adapters))
    assert main(["-q", *first, "--composer", composer, "--style", "nosuch"]) == 2
    why = {
        "neural": f"no adapter folder {adapters / 'nosuch'}",
        "rules": "the rules composer has no style adapters",
    }[composer]
    error = f"livekomp: error: style 'nosuch': {why}; see `livekomp adapters list`\n"
    assert capsys.readouterr().err == error
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.mid").exists()


def test_a_style_cue_that_cannot_load_is_a_warning_and_the_set_plays(tmp_path, capsys, caplog):
    setlist = tmp_path / "gig.toml"
    setlist.write_text('bars = 4\n[[cue]]\nbar = 2\nstyle = "reel"\n')
    out = tmp_path / "out"
    assert main(["-q", "rehearse", str(setlist), "--out", str(out), "--composer", "rules"]) == 0
    assert len(json.loads((out / "summary.json").read_text())["bars"]) == 4
    refused = "style 'reel' refused: the rules composer has no style adapters"
    assert refused in capsys.readouterr().out
    warning = "style 'reel': the rules composer has no style adapters; refused, the base model"
    assert warning in caplog.text  # the warning, at start


@pytest.mark.parametrize("command", ["generate", "rehearse", "serve"])
def test_a_bad_style_name_is_a_clear_error(tmp_path, command, capsys):
    setlist = tmp_path / "gig.toml"
    setlist.write_text("bars = 4\n[[cue]]\nbar = 0\nvalence = 0.5\n")
    first = {
        "generate": ["generate", *MOOD, "--out", str(tmp_path / "x.mid")],
        "rehearse": ["rehearse", str(setlist), "--out", str(tmp_path / "out")],
        "serve": ["serve"],
    }[command]
    assert main([*first, "--style", "my reel"]) == 2
    error = capsys.readouterr().err
    flag = "styles" if command == "serve" else "--style"
    assert f"{flag}: 'my reel' is not a style name" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.mid").exists()


# Files that are not text: random bytes, and TOML saved as UTF-16 (a Windows editor's "Unicode").
NOT_TEXT = {
    "random-bytes": random.Random(12).randbytes(2048),
    "utf-16": 'title = "Sunrise"\nbars = 4\n'.encode("utf-16"),
}


@pytest.mark.parametrize("what", ["setlist", "config", "mapping", "lines"])
@pytest.mark.parametrize("content", NOT_TEXT.values(), ids=NOT_TEXT)
def test_a_file_that_is_not_text_is_one_clear_line(tmp_path, monkeypatch, what, content, capsys):
    def serve_live(config):
        raise AssertionError("serve started: the config should have failed before any port")

    monkeypatch.setattr("livekomp.app.serve_live", serve_live)
    binary = tmp_path / "file.toml"
    binary.write_bytes(content)
    setlist = tmp_path / "gig.toml"
    setlist.write_text("bars = 2\n")
    out = tmp_path / "out"
    command = {
        "setlist": ["rehearse", str(binary), "--out", str(out)],
        "config": ["serve", "--config", str(binary)],
        "mapping": ["layout", "touchosc", "--mapping", str(binary), "--out", str(out / "x.tosc")],
        "lines": ["rehearse", str(setlist), "--out", str(out), "--lines", str(binary), "--audio"],
    }[what]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert error == f"livekomp: error: {binary}: not UTF-8 text (is it a TOML file?)\n"
    assert not out.exists()


async def _cancelled() -> trio.Cancelled:
    """A real trio.Cancelled (it has no public constructor)."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(0)
        except trio.Cancelled as cancelled:
            return cancelled
    raise AssertionError("not cancelled")


async def _interrupted_in_a_nursery() -> None:
    """Ctrl-C in a task of a nursery: trio.run raises it in an exception group."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)
        raise KeyboardInterrupt


INTERRUPTS = {
    "bare": lambda: KeyboardInterrupt(),
    "group-of-one": lambda: BaseExceptionGroup("trio", [KeyboardInterrupt()]),
    "nested-with-cancelled": lambda: BaseExceptionGroup(
        "outer",
        [BaseExceptionGroup("inner", [KeyboardInterrupt()]), trio.run(_cancelled)],
    ),
}


def _command_raising(make: object):
    def command(args):
        if make == "trio":
            trio.run(_interrupted_in_a_nursery)
        raise make()

    return command


@pytest.mark.parametrize("make", [*INTERRUPTS.values(), "trio"], ids=[*INTERRUPTS, "trio-run"])
@pytest.mark.parametrize("command", ["rehearse", "generate", "serve", "ports"])
def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, command, make, capsys):
    monkeypatch.setitem(livekomp.cli.COMMANDS, command, _command_raising(make))
    argv = {
        "rehearse": ["rehearse", "set.toml", "--out", "out"],
        "generate": ["generate", *MOOD, "--out", "x.mid"],
        "serve": ["serve"],
        "ports": ["ports"],
    }[command]
    assert main(argv) == 130
    assert capsys.readouterr().err == "livekomp: interrupted\n"


def test_an_error_beside_a_ctrl_c_keeps_its_traceback(monkeypatch):
    bug = RuntimeError("a bug")

    def command(args):
        raise BaseExceptionGroup("trio", [KeyboardInterrupt(), bug])

    monkeypatch.setitem(livekomp.cli.COMMANDS, "ports", command)
    with pytest.raises(BaseExceptionGroup) as raised:
        main(["ports"])
    assert raised.value.exceptions[1] is bug


def test_ctrl_c_in_a_rehearsal_is_one_line_and_leaves_no_files(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "livekomp.cli", "-q", "rehearse"]
    command += [str(EXAMPLES / "sunrise.toml"), "--out", str(out), "--composer", "rules", "--audio"]
    with subprocess.Popen(
        command,
        cwd=EXAMPLES.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`… &`) inherits SIGINT ignored, and so would the
        # rehearsal: a user's terminal gives it the default, as this does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as rehearsal:
        deadline = time.monotonic() + 60
        while not (out.is_dir() and any(out.iterdir())):  # the rehearsal has begun writing
            assert rehearsal.poll() is None, rehearsal.communicate()
            assert time.monotonic() < deadline, "nothing written in a minute"
            time.sleep(0.01)
        rehearsal.send_signal(signal.SIGINT)
        _, err = rehearsal.communicate(timeout=60)
    assert rehearsal.returncode == 130, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == "livekomp: interrupted"
    assert sum("interrupted" in line for line in lines) == 1
    assert not out.exists() or list(out.iterdir()) == []  # no set.mid, set.wav, summary, temps


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_the_onnx_runtime_without_its_packages_is_one_line(tmp_path, monkeypatch, missing, capsys):
    from tests.models.conftest import save_tiny

    checkpoints = save_tiny(tmp_path / "checkpoints")  # not the checkout's: it stays untouched
    monkeypatch.setitem(sys.modules, missing, None)  # import onnx (or onnxruntime) fails
    out = tmp_path / "out"
    flags = ["--runtime", "onnx", "--checkpoints", str(checkpoints)]
    assert main(["-q", "rehearse", str(EXAMPLES / "sunrise.toml"), "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err == (
        f"livekomp: error: --runtime onnx needs the {missing} package, which is not installed: "
        "pip install -c constraints.txt onnx onnxruntime\n"
    )
    assert not (checkpoints / "onnx").exists()  # no empty export folder left behind
    assert not out.exists()
