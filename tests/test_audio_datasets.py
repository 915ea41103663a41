import numpy as np
import pytest
import soundfile as sf

from avfed.data.sources.audio_io import fit_length
from avfed.data.sources.esc50 import load_esc50, read_esc50
from avfed.data.sources.speech_commands import load_speech_commands, speaker_of

ESC_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def esc50_tree(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta").mkdir()
    rows = [  # filename, fold, target, category, esc10, src_file, seconds
        ("1-100-A-0.wav", 1, 0, "dog", "True", 100, 1.0),
        ("2-101-A-0.wav", 2, 0, "dog", "True", 101, 1.0),
        ("3-102-A-1.wav", 3, 1, "rooster", "True", 102, 0.25),  # short: padded
        ("5-103-A-1.wav", 5, 1, "rooster", "True", 103, 1.0),
        ("5-104-A-5.wav", 5, 5, "cat", "False", 104, 1.0),
        ("4-105-A-5.wav", 4, 5, "cat", "False", 105, None),  # corrupt
        ("1-106-A-5.wav", 1, 5, "cat", "False", 106, "missing"),
    ]
    lines = [ESC_HEADER]
    for name, fold, target, category, esc10, src, seconds in rows:
        lines.append(f"{name},{fold},{target},{category},{esc10},{src},A\n")
        if seconds is None:
            (tmp_path / "audio" / name).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        elif seconds != "missing":
            sf.write(tmp_path / "audio" / name, tone(seconds, 8000), 8000)
    (tmp_path / "meta" / "esc50.csv").write_text("".join(lines))
    return tmp_path


def test_esc50_splits_by_fold_and_skips_corrupt_and_missing(esc50_tree):
    with pytest.warns(UserWarning) as caught:
        train, test = load_esc50(esc50_tree, test_fold=5, sample_rate=4000, clip_seconds=0.5)
    messages = " ".join(str(w.message) for w in caught)
    assert "4-105-A-5.wav" in messages and "1-106-A-5.wav" in messages
    assert train.classes == ["dog", "rooster", "cat"]  # targets 0, 1, 5 -> labels 0, 1, 2
    assert list(train.labels) == [0, 0, 1] and list(train.speakers) == [100, 101, 102]
    assert list(test.labels) == [1, 2] and list(test.speakers) == [103, 104]
    assert sorted(s.path.name for s in train.skipped) == ["1-106-A-5.wav", "4-105-A-5.wav"]
    assert train.sample_rate == 4000
    assert all(len(w) == 2000 and w.dtype == np.float32 for w in train.waveforms + test.waveforms)
    short = train.waveforms[2]  # 0.25 s -> 1000 samples, centred in 2000
    assert np.all(short[:500] == 0) and np.all(short[1500:] == 0)
    assert np.abs(short[500:1500]).max() > 0.3


def test_esc50_folds_and_esc10_subset(esc50_tree):
    with pytest.warns(UserWarning):
        data, folds = read_esc50(esc50_tree, sample_rate=8000, clip_seconds=None)
    assert list(folds) == [1, 2, 3, 5, 5]
    assert [len(w) for w in data.waveforms] == [8000, 8000, 2000, 8000, 8000]
    small, folds10 = read_esc50(esc50_tree, sample_rate=8000, esc10=True)
    assert small.classes == ["dog", "rooster"] and list(folds10) == [1, 2, 3, 5]
    with pytest.warns(UserWarning):
        train, test = load_esc50(esc50_tree, test_fold=1, sample_rate=8000)
    assert len(train) == 4 and len(test) == 1


def test_esc50_metadata_errors_name_the_file(esc50_tree, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="meta/esc50.csv"):
        load_esc50(empty)
    csv_path = esc50_tree / "meta" / "esc50.csv"
    csv_path.write_text("filename,fold,target\n1-100-A-0.wav,1,0\n")
    with pytest.raises(ValueError, match=r"esc50.csv lacks column\(s\) \['category'\]"):
        read_esc50(esc50_tree)
    csv_path.write_text(ESC_HEADER + "1-100-A-0.wav,7,0,dog,True,100,A\n")
    with pytest.raises(ValueError, match="line 2: fold must be one of"):
        read_esc50(esc50_tree)
    with pytest.raises(ValueError, match="test_fold must be one of"):
        load_esc50(esc50_tree, test_fold=6)


@pytest.fixture
def speech_commands_tree(tmp_path):
    files = {
        "yes/aaaa1111_nohash_0.wav": 1.0, "yes/aaaa1111_nohash_1.wav": 0.5,
        "yes/bbbb2222_nohash_0.wav": 1.0, "yes/cccc3333_nohash_0.wav": 1.0,
        "no/aaaa1111_nohash_0.wav": 1.0, "no/bbbb2222_nohash_0.wav": 1.0,
        "no/dddd4444_nohash_0.wav": None,  # corrupt
        "_background_noise_/white_noise.wav": 3.0,
    }
    for rel, seconds in files.items():
        path = tmp_path / rel
        path.parent.mkdir(exist_ok=True)
        if seconds is None:
            path.write_bytes(b"not a wav file at all")
        else:
            sf.write(path, tone(seconds, 16000), 16000)
    (tmp_path / "validation_list.txt").write_text(
        "yes/bbbb2222_nohash_0.wav\nno/bbbb2222_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text(
        "yes/cccc3333_nohash_0.wav\nno/dddd4444_nohash_0.wav\nno/eeee5555_nohash_0.wav\n")
    return tmp_path


def test_speech_commands_official_splits_speakers_and_skips(speech_commands_tree):
    with pytest.warns(UserWarning) as caught:
        splits = load_speech_commands(speech_commands_tree, sample_rate=8000)
    messages = " ".join(str(w.message) for w in caught)
    assert "dddd4444_nohash_0.wav" in messages and "eeee5555_nohash_0.wav" in messages
    assert splits.train.classes == ["no", "yes"]  # _background_noise_ is not a class
    assert splits.speaker_names == ["aaaa1111", "bbbb2222", "cccc3333", "dddd4444"]
    assert list(splits.train.labels) == [0, 1, 1] and list(splits.train.speakers) == [0, 0, 0]
    assert list(splits.validation.labels) == [0, 1]
    assert list(splits.validation.speakers) == [1, 1]
    assert list(splits.test.labels) == [1] and list(splits.test.speakers) == [2]
    assert sorted(s.path.name for s in splits.test.skipped) == [
        "dddd4444_nohash_0.wav", "eeee5555_nohash_0.wav"]
    assert splits.train.skipped == [] and splits.validation.skipped == []
    waves = splits.train.waveforms + splits.validation.waveforms + splits.test.waveforms
    assert all(len(w) == 8000 for w in waves) and splits.train.sample_rate == 8000
    half = splits.train.waveforms[2]  # the 0.5 s clip, zero-padded at both ends
    assert np.all(half[:2000] == 0) and np.all(half[-2000:] == 0)


def test_speech_commands_word_filter_and_errors(speech_commands_tree):
    splits = load_speech_commands(speech_commands_tree, sample_rate=8000, words=["yes"])
    assert splits.train.classes == ["yes"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (2, 1, 1)
    with pytest.raises(ValueError, match=r"words \['maybe'\] have no folder"):
        load_speech_commands(speech_commands_tree, words=["maybe"])
    (speech_commands_tree / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt"):
        load_speech_commands(speech_commands_tree)


def test_speaker_names_and_length_rule():
    assert speaker_of("bb05582b_nohash_3.wav") == "bb05582b"
    assert speaker_of("noise.wav") is None
    assert fit_length(np.arange(10.0), 4).tolist() == [3.0, 4.0, 5.0, 6.0]
    assert fit_length(np.ones(3), 6).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
