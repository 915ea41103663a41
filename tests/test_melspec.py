"""The torch log-mel front-end against librosa (a test-only dependency)."""

import numpy as np
import pytest
import torch

from avfed.audio.melspec import LogMel, mel_filterbank

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize(("sr", "n_fft", "n_mels", "fmin", "fmax"), [
    (16000, 400, 64, 50.0, 8000.0),
    (16000, 1024, 128, 0.0, None),
    (22050, 512, 40, 60.0, 7800.0),
])
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_log_mel_matches_librosa_on_a_random_signal():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    front = LogMel(sample_rate=16000, n_fft=400, hop_length=160, n_mels=64, f_min=50,
                   f_max=8000)
    ours = front(torch.from_numpy(wave))
    ref = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160,
                                         n_mels=64, fmin=50, fmax=8000, power=2.0,
                                         center=True, pad_mode="constant")
    ref = np.log(ref + 1e-6)
    assert ours.shape == (1, 1, 64, ref.shape[1])
    assert np.abs(ours[0, 0].numpy() - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_batches_are_processed_independently():
    front = LogMel(n_mels=16)
    a, b = torch.randn(4000), torch.randn(4000)
    both = front(torch.stack([a, b]))
    assert torch.allclose(both[1], front(b)[0], atol=1e-5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"f_max": 9000.0}, "Nyquist"),
    ({"n_mels": 0}, "n_mels"),
    ({"hop_length": 0}, "hop_length"),
    ({"win_length": 800}, "win_length"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogMel(sample_rate=16000, n_fft=400, **kwargs)


def test_wrong_input_rank_is_rejected():
    with pytest.raises(ValueError, match="samples"):
        LogMel()(torch.randn(2, 1, 100))
