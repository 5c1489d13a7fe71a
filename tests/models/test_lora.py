"""Style adapters: fine-tuning on a style corpus the test writes, the style it learns, merging,
and every way an adapter can be refused while the base models carry on.

One fine-tune (a few seconds on the shipped base models) serves the whole module.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from livekomp import cli
from livekomp.composer import ComposerSettings, build_composer, refuse_styles
from livekomp.inputs.setlist import parse_setlist
from livekomp.models import checkpoint, data, lora, proxy
from livekomp.models.finetune import FinetuneError, FinetuneOptions, finetune, split_records
from livekomp.models.midi_import import MidiImportError, read_midi_folder
from livekomp.models.neural import NeuralComposer, load_neural
from livekomp.models.runtime import OnnxTrunk, TorchTrunk, onnx_path
from livekomp.models.scores import groove_scores, melody_scores
from livekomp.music.drums import Drum
from livekomp.music.phrase import BarRequest, Part
from livekomp.rehearsal import rehearse
from tests.models.conftest import tiny_models
from tools import style_check
from tools.style_corpus import DOTTED, TONIC, TRIPLETS, pentatonic_share, write_corpus

BASE = checkpoint.DEFAULT_DIR
EPOCHS = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[lora.StyleInfo, Path, list[str]]:
    root = tmp_path_factory.mktemp("style")
    corpus = write_corpus(root / "midi")
    (corpus / "notes.mid").write_bytes(b"not a MIDI file at all")
    said: list[str] = []
    options = FinetuneOptions(midi=corpus, name="penta", epochs=EPOCHS, device="cpu")
    info = finetune(options, root / "adapters", BASE, progress=False, say=said.append)
    return info, corpus, said


@pytest.fixture
def adapters(trained, tmp_path) -> Path:
    """A copy of the trained adapter's folder that a test may break."""
    info, _, _ = trained
    folder = tmp_path / "adapters"
    shutil.copytree(info.folder, folder / "penta")
    return folder


def base_models() -> dict[str, torch.nn.Module]:
    return {kind: checkpoint.load(kind, BASE) for kind in lora.KINDS}


def base_sha(kind: str) -> str:
    return checkpoint.read_description(kind, BASE)["sha256"]


def test_fine_tuning_writes_the_adapter_and_its_card(trained):
    info, _, said = trained
    assert info.targets == ("melody", "groove")
    assert (info.rank, info.alpha) == (8, 16.0)
    for kind in info.targets:
        assert (info.folder / kind / lora.WEIGHTS_FILE).is_file()
        assert (info.folder / kind / lora.CONFIG_FILE).is_file()
        assert info.base_sha(kind) == base_sha(kind)
    facts = info.description
    assert len(facts["data"]["files_used"]) == 14
    assert facts["data"]["small_folder"] is None, "14 tunes, 1,792 notes: not a small folder"
    assert facts["data"]["held_out"], "whole files are held out"
    assert not set(facts["data"]["held_out"]) & set(facts["data"]["train"])
    # The unreadable file is skipped with a line that names it; the good ones still train.
    assert any("notes.mid" in line for line in said)
    assert facts["data"]["files_skipped"] == [line.removeprefix("skipped ") for line in said[:1]]
    # Trainable parameters: rank × (in + out) for each adapted layer.
    assert facts["training"]["melody"]["trainable_parameters"] == 4 * 4 * 8 * (128 + 128)
    card = (info.folder / lora.CARD_FILE).read_text()
    assert "penta" in card and "held-out" in card.lower()


def held_out_examples(info: lora.StyleInfo, corpus: Path):
    records, _ = read_midi_folder(corpus)
    held = [r for r in records if r["id"] in info.description["data"]["held_out"]]
    stats = proxy.ProxyStats(**checkpoint.read_description("melody", BASE)["proxy_stats"])
    return data.melody_examples(held, stats, 64, stride=16), data.groove_examples(held, stats)


def test_the_adapted_models_beat_the_base_on_held_out_songs_of_the_style(trained):
    info, corpus, _ = trained
    melody_held, groove_held = held_out_examples(info, corpus)
    base = base_models()
    adapted_melody = lora.inner(
        lora.load_adapter(info, "melody", base["melody"], base_sha("melody"))
    )
    adapted_groove = lora.inner(
        lora.load_adapter(info, "groove", base["groove"], base_sha("groove"))
    )

    def melody_loss(model):
        return sum(field["nll"] for field in melody_scores(model, melody_held).values())

    def groove_loss(model):
        scores = groove_scores(model, groove_held)
        return scores["onset_bce"] + 0.5 * scores["accent_mse"]

    assert melody_loss(adapted_melody) < 0.9 * melody_loss(base["melody"])
    assert groove_loss(adapted_groove) < 0.5 * groove_loss(base["groove"])
    # The card reports the same held-out figures as measured here.
    card = info.description["training"]
    assert card["melody"]["held_out"]["adapted"]["loss"] == pytest.approx(
        melody_loss(adapted_melody), rel=1e-4
    )
    assert card["melody"]["held_out"]["base"]["loss"] == pytest.approx(
        melody_loss(base["melody"]), rel=1e-4
    )


def melody_of(composer, style: str, bars: int = 24) -> list[tuple[float, int]]:
    """(start_beats, pitch) of every melody note over `bars` bars in one mood."""
    notes = []
    for i in range(bars):
        request = BarRequest(i, 4, TONIC, valence=0.4, arousal=0.2, style=style)
        bar = composer.compose_bar(request)
        composer.accept(request, bar)
        notes += [(n.start_beats, n.pitch) for n in bar.parts[Part.MELODY]]
    return notes


def test_the_style_moves_the_music_toward_the_corpus(trained):
    info, _, _ = trained
    base = melody_of(load_neural(11, BASE, device="cpu"), "")
    styled_composer = load_neural(
        11, BASE, device="cpu", styles=["penta"], adapters_dir=info.folder.parent
    )
    assert styled_composer.styles == ("penta",)
    styled = melody_of(styled_composer, "penta")
    base_share = pentatonic_share([p for _, p in base], TONIC)
    styled_share = pentatonic_share([p for _, p in styled], TONIC)
    assert styled_share > base_share + 0.1, (base_share, styled_share)
    assert styled_share > 0.9

    def dotted_share(notes):  # onsets on the long-short grid: the beat and its last sixteenth
        return np.mean([(start % 1.0) in (0.0, DOTTED[0]) for start, _ in notes])

    assert dotted_share(styled) > dotted_share(base) + 0.1


def test_the_styles_groove_is_heard_in_the_drums(trained):
    """The adapter's groove alone (the base melody under both) moves the hats onto the style's
    dotted sixteenth and keeps the kick on the beat, where its long notes fall."""
    info, _, _ = trained
    base = base_models()
    harmony = checkpoint.load("harmony", BASE)
    styled_groove = lora.merged(info, "groove", base["groove"], base_sha("groove"))
    composer = NeuralComposer(
        base["melody"], harmony, base["groove"], TorchTrunk(base["melody"]), seed=11
    )
    composer.add_style("penta", base["melody"], TorchTrunk(base["melody"]), styled_groove)
    hits: dict[str, list[tuple[int, int]]] = {"base": [], "penta": []}  # (step, drum)
    for i in range(16):
        for style in hits:
            request = BarRequest(i, 4, TONIC, valence=0.4, arousal=0.2, style=style)
            bar = composer.compose_bar(request)
            hits[style] += [(round(n.start_beats * 4), n.pitch) for n in bar.parts[Part.DRUMS]]
        composer.accept(request, bar)  # the style's bar: both continue from the same history

    def share(style: str, drums: set[Drum], where) -> float:
        steps = [step for step, drum in hits[style] if drum in drums]
        return float(np.mean([where(step) for step in steps]))

    def dotted(step: int) -> bool:
        return step % 4 == 3

    hats = {Drum.CLOSED_HAT, Drum.OPEN_HAT}
    assert share("penta", hats, dotted) > share("base", hats, dotted) + 0.15
    assert share("penta", {Drum.KICK}, lambda step: step % 4 == 0) == 1.0
    assert hits["penta"] != hits["base"]


def test_the_style_passes_the_style_check(trained):
    """Composed in the folder's moods, the style's pitch-class and interval histograms are at
    most half as far from the folder's as the base's, and its pitch-class entropy is kept."""
    info, corpus, _ = trained
    folder = style_check.read_folder(corpus, BASE)
    verdict = style_check.check_composed(
        "penta", folder, BASE, info.folder.parent, bars=24, seeds=(1, 2)
    )
    assert verdict.ok, verdict.as_dict()


def test_merged_and_unmerged_adapters_agree(trained):
    info, _, _ = trained
    base = base_models()
    unmerged = lora.inner(lora.load_adapter(info, "melody", base["melody"], base_sha("melody")))
    merged = lora.merged(info, "melody", base["melody"], base_sha("melody"))
    steps = torch.tensor([[[0, 30, 5], [18, 32, 3], [24, 34, 5], [42, 37, 3], [96, 32, 7]]])
    mood = torch.tensor([[[0.4, 0.2]] * 5])
    metre = torch.tensor([2])
    past = merged.empty_cache()
    with torch.no_grad():
        a, _, _ = unmerged.trunk(steps, mood, metre, *past)
        b, _, _ = merged.trunk(steps, mood, metre, *past)
        plain, _, _ = base["melody"].trunk(steps, mood, metre, *past)
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-2), "the adapter changes the model"
    groove_unmerged = lora.load_adapter(info, "groove", base["groove"], base_sha("groove"))
    groove_merged = lora.merged(info, "groove", base["groove"], base_sha("groove"))
    inputs = (torch.tensor([[0.4, 0.2]]), torch.tensor([2]), torch.zeros(1, 32))
    with torch.no_grad():
        for x, y in zip(lora.inner(groove_unmerged)(*inputs), groove_merged(*inputs), strict=True):
            assert torch.allclose(x, y, atol=1e-4)


def test_merge_writes_checkpoints_that_load_as_the_base_ones_do(trained, tmp_path):
    info, _, _ = trained
    written = lora.merge_style(info, BASE, tmp_path / "merged")
    assert set(written) >= {"melody", "harmony", "groove", "onnx"}
    merged = checkpoint.load("melody", tmp_path / "merged")
    expected = lora.merged(info, "melody", checkpoint.load("melody", BASE), base_sha("melody"))
    for (name, a), (_, b) in zip(
        merged.state_dict().items(), expected.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    description = checkpoint.read_description("melody", tmp_path / "merged")
    assert description["merged_style"]["name"] == "penta"
    assert description["proxy_stats"] == checkpoint.read_description("melody", BASE)["proxy_stats"]
    # The ONNX export of the merged melody model runs what torch runs.
    assert written["onnx"] == onnx_path(tmp_path / "merged")
    onnx, torch_trunk = OnnxTrunk(merged, written["onnx"]), TorchTrunk(merged, "cpu")
    steps = np.array([[[0, 30, 5], [12, 32, 5], [24, 34, 5]]], dtype=np.int64)
    mood = np.zeros((1, 3, 2), dtype=np.float32)
    a, _ = onnx(steps, mood, 2, onnx.empty())
    b, _ = torch_trunk(steps, mood, 2, torch_trunk.empty())
    np.testing.assert_allclose(a, b, atol=1e-4)
    # And the whole composer plays from the merged folder.
    assert (
        load_neural(1, tmp_path / "merged", device="cpu")
        .compose_bar(BarRequest(0, 4, 0, 0.0, 0.0))
        .parts[Part.MELODY]
    )


# --- refusals: each names the adapter, and the base plays on ---


def rewrite_style(folder: Path, **changes) -> None:
    path = folder / lora.STYLE_FILE
    description = json.loads(path.read_text())
    description.update(changes)
    path.write_text(json.dumps(description))


def corrupt(folder: Path) -> None:
    weights = folder / "melody" / lora.WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))


def rehash(folder: Path) -> None:
    """Record the melody adapter file's new hash, so only the check under test can fail."""
    rewrite_style(
        folder,
        files={
            "melody": lora.sha256(folder / "melody" / lora.WEIGHTS_FILE),
            "groove": lora.sha256(folder / "groove" / lora.WEIGHTS_FILE),
        },
    )


def truncate(folder: Path) -> None:
    weights = folder / "melody" / lora.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:200])
    rehash(folder)


def other_base(folder: Path) -> None:
    rewrite_style(folder, base={"melody": "ab" * 32, "groove": base_sha("groove")})


def other_rank(folder: Path) -> None:
    config_path = folder / "melody" / lora.CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["r"] = 4
    config_path.write_text(json.dumps(config))
    rewrite_style(folder, rank=4)


def rewrite_tensors(folder: Path, change) -> None:
    weights = folder / "melody" / lora.WEIGHTS_FILE
    tensors = load_file(str(weights))
    save_file({key: change(key, value) for key, value in tensors.items()}, str(weights))
    rehash(folder)


def tensors_of_another_rank(folder: Path) -> None:
    rewrite_tensors(folder, lambda key, value: value[:4] if "lora_A" in key else value)


def not_finite(folder: Path) -> None:
    rewrite_tensors(folder, lambda key, value: value * float("nan") if "q_proj" in key else value)


def another_model_size(folder: Path) -> None:
    """An adapter made for a model of another size, its hashes all in order."""
    tiny_melody, _, _ = tiny_models()
    shutil.rmtree(folder / "melody")
    lora.save_adapter(lora.attach(tiny_melody, "melody", 8, 16.0), folder / "melody")
    rehash(folder)


BREAKAGES = {
    "corrupt": (corrupt, "corrupt"),
    "truncated": (truncate, "unreadable"),
    "missing": (lambda f: (f / "melody" / lora.WEIGHTS_FILE).unlink(), "no such file"),
    "no description": (lambda f: (f / lora.STYLE_FILE).unlink(), "no such file"),
    "garbled description": (lambda f: (f / lora.STYLE_FILE).write_text("{"), "unreadable"),
    "other base": (other_base, "trained on other melody weights"),
    "other rank": (other_rank, "rank 8, its config says 4"),
    "rank not as described": (lambda f: rewrite_style(f, rank=4), "differ from style.json"),
    "tensors of another rank": (tensors_of_another_rank, "has rank 4, its config says 8"),
    "not finite": (not_finite, "not finite"),
    "another model size": (another_model_size, "made for a model of another shape"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_adapter_is_refused_by_name_and_the_base_plays_on(adapters, breakage, caplog):
    damage, words = BREAKAGES[breakage]
    damage(adapters / "penta")
    settings = ComposerSettings(device="cpu", styles=("penta",), adapters=str(adapters))
    with caplog.at_level(logging.WARNING, logger="livekomp"):
        composer, unavailable = build_composer(settings, 2)
        refused = refuse_styles(composer, settings.styles)
    assert unavailable is None and composer.name == "neural"
    assert composer.styles == ()
    reason = refused["penta"]
    assert "'penta'" in reason and words in reason, reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"{reason}; refused, the base model carries on"]
    bar = composer.compose_bar(BarRequest(0, 4, 0, 0.0, 0.0, style="penta"))
    assert bar.parts[Part.MELODY] and "style" not in bar.info


def test_an_unknown_style_is_refused_and_the_good_ones_load(adapters):
    composer = load_neural(
        2, BASE, device="cpu", styles=["nope", "penta", "../etc"], adapters_dir=adapters
    )
    assert composer.styles == ("penta",)
    assert "no adapter folder" in composer.refused_styles["nope"]
    assert "not a style name" in composer.refused_styles["../etc"]


# --- fine-tuning's own errors ---


def test_a_folder_with_no_usable_midi_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MidiImportError, match="no MIDI files"):
        finetune(FinetuneOptions(midi=empty, name="x"), tmp_path / "a", BASE, progress=False)
    (empty / "a.mid").write_bytes(b"")
    (empty / "b.mid").write_bytes(b"MThd garbage")
    said = []
    with pytest.raises(MidiImportError, match="none of its 2 MIDI files can be used"):
        finetune(
            FinetuneOptions(midi=empty, name="x"),
            tmp_path / "a",
            BASE,
            progress=False,
            say=said.append,
        )
    assert len(said) == 2 and "a.mid" in said[0] and "b.mid" in said[1]


def test_fine_tuning_will_not_replace_a_style_unless_forced(trained, tmp_path):
    info, corpus, _ = trained
    with pytest.raises(FinetuneError, match="--force"):
        finetune(FinetuneOptions(midi=corpus, name="penta"), info.folder.parent, BASE)
    with pytest.raises(lora.AdapterError, match="not a style name"):
        finetune(FinetuneOptions(midi=corpus, name="bad name"), tmp_path, BASE)
    with pytest.raises(lora.AdapterError, match="means the base"):
        finetune(FinetuneOptions(midi=corpus, name="base"), tmp_path, BASE)


def test_a_lone_file_is_split_at_a_bar_and_too_short_a_one_refused():
    record = {
        "id": "one.mid",
        "work": "one.mid",
        "bar_ticks": [48] * 20,
        "notes": [[bar, 0, 60, 48] for bar in range(20)],
    }
    train, held = split_records([record], 0.15)
    assert len(train[0]["bar_ticks"]) == 16 and len(held[0]["bar_ticks"]) == 4
    assert held[0]["notes"][0][0] == 0 and len(held[0]["notes"]) == 4
    with pytest.raises(FinetuneError, match="too short"):
        split_records([{**record, "bar_ticks": [48] * 6, "notes": record["notes"][:6]}], 0.15)


# --- styles in a rehearsal and from the command line, with the real adapter ---


def notes_by_bar(path: Path, beats_per_bar: int = 4) -> dict[int, list[tuple[int, int, int, int]]]:
    """(tick, channel, pitch, velocity) of every note-on in a MIDI file, by bar."""
    midi = mido.MidiFile(path)
    bar_ticks = midi.ticks_per_beat * beats_per_bar
    bars: dict[int, list[tuple[int, int, int, int]]] = {}
    for track in midi.tracks:
        now = 0
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                note = (now, message.channel, message.note, message.velocity)
                bars.setdefault(now // bar_ticks, []).append(note)
    return {bar: sorted(notes) for bar, notes in bars.items()}


def test_a_style_cue_changes_the_music_exactly_from_its_bar(trained, tmp_path):
    info, _, _ = trained
    settings = ComposerSettings(device="cpu", adapters=str(info.folder.parent))
    plain = {"bars": 8, "key": "D", "cue": [{"bar": 0, "valence": 0.4, "arousal": 0.2}]}
    cued = {**plain, "cue": [*plain["cue"], {"bar": 4, "style": "penta"}]}
    runs = {}
    for name, table in (("plain", plain), ("cued", cued)):
        setlist = parse_setlist(table, tmp_path / f"{name}.toml")
        runs[name] = rehearse(setlist, tmp_path / name, seed=3, composer=settings)
    assert runs["cued"].summary["composer"]["styles"] == ["penta"]
    before, after = notes_by_bar(runs["plain"].midi_path), notes_by_bar(runs["cued"].midi_path)
    assert [before[bar] for bar in range(4)] == [after[bar] for bar in range(4)]
    melody = [n for n in before[4] if n[1] == 0], [n for n in after[4] if n[1] == 0]
    assert melody[0] != melody[1], "the style plays from its bar"
    styles = [bar.get("style") for bar in runs["cued"].summary["bars"]]
    assert styles == [None] * 4 + ["penta"] * 4


def test_generate_takes_a_style(trained, tmp_path, capsys):
    info, _, _ = trained
    common = ["--valence", "0.4", "--arousal", "0.2", "--bars", "4", "--key", "D", "--seed", "5"]
    common += ["--adapters", str(info.folder.parent), "--device", "cpu"]
    paths = {}
    for name, extra in (
        ("base", []),
        ("penta", ["--style", "penta"]),
        ("again", ["--style", "penta"]),
    ):
        paths[name] = tmp_path / f"{name}.mid"
        assert cli.main(["-q", "generate", *common, *extra, "--out", str(paths[name])]) == 0
    assert paths["penta"].read_bytes() == paths["again"].read_bytes()
    assert paths["penta"].read_bytes() != paths["base"].read_bytes()


def test_adapters_list_and_merge_from_the_command_line(trained, tmp_path, capsys):
    info, _, _ = trained
    adapters = str(info.folder.parent)
    (info.folder.parent / "junk").mkdir(exist_ok=True)
    assert cli.main(["adapters", "list", "--adapters", adapters]) == 0
    out = capsys.readouterr().out
    assert "penta: melody+groove, rank 8, alpha 16; 14 files, 1792 notes" in out
    assert "fits these base models" in out
    assert "junk: unusable:" in out
    merged = tmp_path / "merged"
    assert (
        cli.main(["adapters", "merge", "penta", "--adapters", adapters, "--out", str(merged)]) == 0
    )
    assert (merged / "melody.safetensors").is_file()
    assert (
        cli.main(["adapters", "merge", "nope", "--adapters", adapters, "--out", str(merged)]) == 2
    )
    assert "style 'nope': no adapter folder" in capsys.readouterr().err


def test_finetune_from_the_command_line_says_what_is_wrong(tmp_path, capsys):
    (tmp_path / "midi").mkdir()
    (tmp_path / "midi" / "a.mid").write_bytes(b"junk")
    code = cli.main(
        ["finetune", "--midi", str(tmp_path / "midi"), "--name", "x", "--adapters", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "none of its 1 MIDI files can be used" in err and "a.mid" in err


def test_the_onnx_runtime_plays_a_style_as_torch_does(trained):
    info, _, _ = trained
    written = {}
    for runtime in ("torch", "onnx"):
        composer = load_neural(
            4,
            BASE,
            device="cpu",
            runtime=runtime,
            styles=["penta"],
            adapters_dir=info.folder.parent,
        )
        assert composer.styles == ("penta",)
        bars = []
        for i in range(4):
            request = BarRequest(i, 4, TONIC, 0.4, 0.2, style="penta" if i % 2 else "")
            bar = composer.compose_bar(request)
            composer.accept(request, bar)
            bars.append(bar.info["steps"])
        written[runtime] = bars
    assert written["onnx"] == written["torch"]


def test_a_folder_with_no_groove_to_learn_adapts_the_melody_alone(tmp_path):
    corpus = write_corpus(tmp_path / "midi", songs=4, rhythm=TRIPLETS)
    said = []
    options = FinetuneOptions(midi=corpus, name="triplets", epochs=2, device="cpu")
    info = finetune(options, tmp_path / "adapters", BASE, progress=False, say=said.append)
    assert info.targets == ("melody",)
    assert any("groove model stays as it is" in line for line in said)
    composer = load_neural(
        1, BASE, device="cpu", styles=["triplets"], adapters_dir=tmp_path / "adapters"
    )
    assert composer.styles == ("triplets",)
    assert (
        composer.compose_bar(BarRequest(0, 4, 0, 0.0, 0.0, style="triplets")).info["style"]
        == "triplets"
    )


def test_an_adapter_that_never_beats_the_base_says_so_and_plays_as_the_base(tmp_path):
    corpus = write_corpus(tmp_path / "midi", songs=4)
    said = []
    options = FinetuneOptions(
        midi=corpus, name="idle", target="melody", epochs=1, learning_rate=0.0, device="cpu"
    )
    info = finetune(options, tmp_path / "adapters", BASE, progress=False, say=said.append)
    facts = info.description["training"]["melody"]
    assert facts["best_epoch"] == 0
    assert facts["held_out"]["adapted"] == facts["held_out"]["base"]
    assert any("saved at zero and plays as the base" in line for line in said)
    base = checkpoint.load("melody", BASE)
    merged = lora.merged(info, "melody", base, base_sha("melody"))
    for (name, a), (_, b) in zip(
        base.state_dict().items(), merged.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
