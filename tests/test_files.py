"""Files whole or not at all: one file (`write_atomically`) or a set of them (`StagedFiles`)."""

import os
import signal
import stat

import pytest

from livekomp.files import StagedFiles, write_atomically


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "set.mid"
    write_atomically(target, b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["set.mid"]


def test_staged_files_appear_together_on_commit(tmp_path):
    out = tmp_path / "out"
    with StagedFiles(out) as files:
        for name in ("set.mid", "summary.json"):
            files.stage(name).write_text(name)
        assert not (out / "set.mid").exists()  # not before the commit
        files.commit()
    assert sorted(os.listdir(out)) == ["set.mid", "summary.json"]
    assert (out / "summary.json").read_text() == "summary.json"


@pytest.mark.parametrize("stop", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_staged_files_leave_nothing_without_a_commit(tmp_path, stop):
    out = tmp_path / "new" / "out"
    with pytest.raises(type(stop)), StagedFiles(out) as files:
        files.stage("set.mid").write_text("half")
        raise stop
    assert os.listdir(tmp_path) == []  # no temporaries, and the folders it made are gone


def test_staged_files_keep_a_folder_that_was_there(tmp_path):
    (tmp_path / "old.txt").write_text("mine")
    with pytest.raises(RuntimeError), StagedFiles(tmp_path) as files:
        files.stage("set.mid")
        raise RuntimeError
    assert os.listdir(tmp_path) == ["old.txt"]


def test_ctrl_c_during_the_commit_comes_after_it(tmp_path, monkeypatch):
    replace = os.replace

    def interrupted_replace(source, target):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C between the renames
        replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    # Ctrl-C as a terminal delivers it, even where the suite was started with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), StagedFiles(tmp_path) as files:
            for name in ("set.mid", "set.wav", "summary.json"):
                files.stage(name).write_text(name)
            files.commit()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(os.listdir(tmp_path)) == ["set.mid", "set.wav", "summary.json"]


def test_files_get_the_mode_a_plain_write_gives_them(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    plain = stat.S_IMODE((tmp_path / "plain").stat().st_mode)  # 0o666 less the umask
    write_atomically(tmp_path / "ready.json", b"{}")
    with StagedFiles(tmp_path / "out") as files:
        files.stage("set.mid")
        files.commit()
    for written in (tmp_path / "ready.json", tmp_path / "out" / "set.mid"):
        assert stat.S_IMODE(written.stat().st_mode) == plain, written
