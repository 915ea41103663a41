import cv2
import numpy as np
import pytest
import soundfile as sf

from avfed.data.sources.folders import load_audio_folder, load_image_folder


@pytest.fixture
def image_tree(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), rng.integers(0, 255, (20, 24, 3),
                                                                         dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "dog" / "gray.png"), np.full((10, 10), 255, np.uint8))
    (tmp_path / "cat" / "broken.png").write_bytes(rng.bytes(300))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_image_folder_loads_valid_files_and_skips_corrupt_ones(image_tree):
    with pytest.warns(UserWarning, match="broken.png"):
        data = load_image_folder(image_tree, image_size=16)
    assert data.classes == ["cat", "dog"]
    assert data.images.shape == (7, 3, 16, 16)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert list(data.labels) == [0, 0, 0, 1, 1, 1, 1]
    assert [s.path.name for s in data.skipped] == ["broken.png"]
    assert data.images.flatten(1).abs().sum(1).min() > 0  # nothing zero-filled
    with pytest.warns(UserWarning, match="broken.png"):
        gray = load_image_folder(image_tree, image_size=8, channels=1)
    assert gray.images.shape[1] == 1


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable image"):
        load_image_folder(tmp_path)


def test_audio_folder_resamples_and_skips_corrupt_and_empty(tmp_path):
    for name in ("yes", "no"):
        (tmp_path / name).mkdir()
    sf.write(tmp_path / "yes" / "a.wav", np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (8000, 2)).astype(np.float32)
    sf.write(tmp_path / "no" / "b.flac", stereo, 8000)
    sf.write(tmp_path / "no" / "empty.wav", np.zeros(0, np.float32), 16000)
    (tmp_path / "yes" / "junk.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.warns(UserWarning) as caught:
        data = load_audio_folder(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "junk.wav" in messages and "empty.wav" in messages
    assert data.classes == ["no", "yes"]
    assert data.sample_rate == 8000  # the first readable file's rate (no/b.flac)
    assert sorted(len(w) for w in data.waveforms) == [8000, 8000]  # 16 kHz file halved
    assert all(w.ndim == 1 and w.dtype == np.float32 for w in data.waveforms)
    assert {s.path.name for s in data.skipped} == {"junk.wav", "empty.wav"}
    with pytest.warns(UserWarning):
        at_16k = load_audio_folder(tmp_path, sample_rate=16000)
    assert at_16k.sample_rate == 16000
    assert sorted(len(w) for w in at_16k.waveforms) == [16000, 16000]


def test_image_folder_source_reports_skipped_files_through_the_catalog(image_tree):
    from avfed.config import DataConfig
    from avfed.data.catalog import load_split

    cfg = DataConfig(source="image_folder", root=str(image_tree), image_size=8,
                     test_fraction=0.34)
    with pytest.warns(UserWarning, match="broken.png"):
        train, test = load_split(cfg, seed=0)
    assert len(train) + len(test) == 7
    assert set(test.labels) == {0, 1}  # stratified: both classes held out
    assert [s.path.name for s in train.skipped] == ["broken.png"]
    with pytest.raises(ValueError, match="data.root"):
        load_split(DataConfig(source="image_folder"), seed=0)


def _photo(size=96, seed=0):
    """A smooth image, so JPEG compresses it into many entropy-coded bytes."""
    noise = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def _with_exif_thumbnail(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP1 segment holding a whole thumbnail JPEG (and so an FFD9)."""
    thumb = cv2.imencode(".jpg", _photo(16, seed=1))[1].tobytes()
    payload = b"Exif\0\0" + thumb
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_truncated_jpeg_and_png_are_skipped_not_grey_filled(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    jpeg = cv2.imencode(".jpg", _photo())[1].tobytes()
    progressive = cv2.imencode(".jpg", _photo(seed=2), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    progressive = progressive.tobytes()
    exif = _with_exif_thumbnail(jpeg)
    png = cv2.imencode(".png", _photo())[1].tobytes()
    valid = {
        "a/ok.jpg": jpeg,
        "a/ok_progressive.jpg": progressive,
        "a/ok_exif.jpg": exif,
        "a/ok_padded.jpg": jpeg + b"\0" * 64,  # bytes after EOI are harmless
        "b/ok.png": png,
        "b/ok_trailing.png": png + b"\0" * 16,
    }
    truncated = {
        "a/cut_half.jpg": jpeg[: len(jpeg) // 2],
        "a/cut_eoi.jpg": jpeg[:-2],  # only the end-of-image marker missing
        "a/cut_progressive.jpg": progressive[: len(progressive) * 3 // 4],
        "a/cut_exif.jpg": exif[: len(exif) - len(jpeg) // 2],  # the thumbnail's EOI remains
        "b/cut_half.png": png[: len(png) // 2],
        "b/cut_iend.png": png[:-12],  # the IEND chunk missing
    }
    for name, data in {**valid, **truncated}.items():
        (tmp_path / name).write_bytes(data)
    # the premise: OpenCV alone decodes a cut-off JPEG into a grey-filled image
    grey = cv2.imread(str(tmp_path / "a/cut_half.jpg"), cv2.IMREAD_UNCHANGED)
    assert grey is not None and (grey == 128).all(axis=-1).mean() > 0.2

    with pytest.warns(UserWarning) as caught:
        data = load_image_folder(tmp_path, image_size=16)
    messages = [str(w.message) for w in caught]
    for name in truncated:
        assert any(str(tmp_path / name) in m and "truncated" in m for m in messages), name
    assert {s.path.relative_to(tmp_path).as_posix() for s in data.skipped} == set(truncated)
    assert len(data) == len(valid)
    assert list(data.labels) == [0, 0, 0, 0, 1, 1]


def test_truncated_wav_is_skipped_but_streamed_size_placeholder_is_read(tmp_path):
    (tmp_path / "x").mkdir()
    wave = (0.5 * np.sin(np.arange(4000) / 5)).astype(np.float32)
    sf.write(tmp_path / "x" / "ok.wav", wave, 8000)
    sf.write(tmp_path / "x" / "ok.ogg", wave, 8000)
    full = (tmp_path / "x" / "ok.wav").read_bytes()
    (tmp_path / "x" / "cut.wav").write_bytes(full[: len(full) // 2])
    # a writer that could not seek back leaves 0xFFFFFFFF as the sizes: not a truncation
    data_at = full.index(b"data")
    streamed = (full[:4] + b"\xff\xff\xff\xff" + full[8:data_at + 4] + b"\xff\xff\xff\xff"
                + full[data_at + 8:])
    (tmp_path / "x" / "streamed.wav").write_bytes(streamed)
    # the premise: libsndfile returns the half that is there, without complaint
    assert len(sf.read(tmp_path / "x" / "cut.wav")[0]) < 4000
    with pytest.warns(UserWarning, match=r"cut\.wav: truncated WAV"):
        data = load_audio_folder(tmp_path)
    assert [s.path.name for s in data.skipped] == ["cut.wav"]
    assert sorted(len(w) for w in data.waveforms) == [4000, 4000, 4000]
