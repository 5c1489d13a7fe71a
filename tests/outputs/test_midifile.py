import mido

from livekomp.music import messages
from livekomp.outputs.midifile import MidiFileRecorder


def read_track(path, name):
    midi = mido.MidiFile(path)
    (track,) = [t for t in midi.tracks if t.name == name]
    tick, timed = 0, []
    for message in track:
        tick += message.time
        if not message.is_meta and message.type != "program_change":
            timed.append((tick, message.bytes()))
    return midi, timed


def test_messages_go_to_their_part_tracks_at_their_beats(tmp_path):
    recorder = MidiFileRecorder(tmp_path / "x.mid", title="t", beats_per_bar=3, bpm=90)
    recorder.send(messages.note_on(0, 60, 100), 0.0)
    recorder.send(bytes([messages.CLOCK_TICK]), 0.0)  # realtime: not part of a MIDI file
    recorder.send(messages.note_off(0, 60), 1.5)
    recorder.send(messages.note_on(9, 36, 90), 1.0)
    recorder.send(messages.note_off(9, 36), 1.25)
    recorder.send(messages.control_change(5, 123, 0), 2.0)  # a channel without a part
    recorder.close()
    midi, melody = read_track(tmp_path / "x.mid", "melody")
    assert melody == [(0, [0x90, 60, 100]), (720, [0x80, 60, 0])]
    assert read_track(tmp_path / "x.mid", "drums")[1] == [
        (480, [0x99, 36, 90]),
        (600, [0x89, 36, 0]),
    ]
    assert read_track(tmp_path / "x.mid", "channel 6")[1] == [(960, [0xB5, 123, 0])]
    # part tracks and any other channel, in channel order
    assert [t.name for t in midi.tracks] == ["t", "melody", "chords", "bass", "channel 6", "drums"]


def test_same_beat_note_off_before_note_on_and_tempo_map(tmp_path):
    recorder = MidiFileRecorder(tmp_path / "x.mid", bpm=120)
    recorder.send(messages.note_on(0, 60, 100), 0.0)
    recorder.send(messages.note_on(0, 62, 100), 1.0)
    recorder.send(messages.note_off(0, 60), 1.0)
    recorder.set_tempo(4.0, 60.0)
    recorder.set_tempo(8.0, 90.0)
    recorder.set_tempo(6.0, 100.0)  # a new map from beat 6 replaces what came after
    recorder.close()
    midi, melody = read_track(tmp_path / "x.mid", "melody")
    assert melody[1:] == [(480, [0x80, 60, 0]), (480, [0x90, 62, 100])]
    tick, tempi = 0, []
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "set_tempo":
            tempi.append((tick, round(mido.tempo2bpm(message.tempo), 3)))
    assert tempi == [(0, 120.0), (1920, 60.0), (2880, 100.0)]


def test_the_same_messages_write_the_same_bytes(tmp_path):
    for name in ("a.mid", "b.mid"):
        recorder = MidiFileRecorder(tmp_path / name)
        for beat in range(8):
            recorder.send(messages.note_on(1, 60 + beat, 80), beat)
            recorder.send(messages.note_off(1, 60 + beat), beat + 0.5)
        recorder.close()
        recorder.close()  # closing twice is harmless
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
