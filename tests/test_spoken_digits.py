import numpy as np
import pytest
import soundfile as sf

from avfed.data.sources import spoken_digits as sd


def _rms(x):
    return float(np.sqrt(np.mean(x**2)))


def test_every_digit_is_non_silent_and_distinct():
    waves = sd.synthesize_many([{"text": w, "voice": "en", "pitch": 50, "pitch_range": 50,
                                 "speed": 175} for w in sd.DIGIT_WORDS])
    assert all(_rms(w) > 0.01 and len(w) > 0.1 * sd.SAMPLE_RATE for w in waves)
    spectra = [np.abs(np.fft.rfft(w, 8192)) for w in waves]
    for i in range(10):
        for j in range(i + 1, 10):
            corr = np.corrcoef(spectra[i], spectra[j])[0, 1]
            assert corr < 0.99, (sd.DIGIT_WORDS[i], sd.DIGIT_WORDS[j])


def test_the_same_request_gives_identical_samples_whatever_came_before():
    first = sd.synthesize("six", "en+f2", pitch=40)
    sd.synthesize("eight nine", "de+m3")
    assert np.array_equal(first, sd.synthesize("six", "en+f2", pitch=40))


def test_speakers_sound_different_for_the_same_word():
    a, b = sd.speaker_table(2, seed=0)
    wa = sd.synthesize("three", a.voice, pitch=a.pitch, pitch_range=a.pitch_range, speed=a.speed)
    wb = sd.synthesize("three", b.voice, pitch=b.pitch, pitch_range=b.pitch_range, speed=b.speed)
    assert a.voice != b.voice
    assert len(wa) != len(wb) or not np.allclose(wa, wb)


def test_generation_is_deterministic_by_seed(tmp_path):
    one = sd.load_spoken_digits(num_speakers=2, repeats=1, seed=7, cache_dir=tmp_path / "a")
    two = sd.load_spoken_digits(num_speakers=2, repeats=1, seed=7, cache_dir=tmp_path / "b")
    other = sd.load_spoken_digits(num_speakers=2, repeats=1, seed=8, cache_dir=tmp_path / "a")
    assert len(one) == 20 and sorted(set(one.labels)) == list(range(10))
    assert all(np.array_equal(x, y) for x, y in zip(one.waveforms, two.waveforms, strict=True))
    assert any(len(x) != len(y) or not np.array_equal(x, y)
               for x, y in zip(one.waveforms, other.waveforms, strict=True))


def test_cache_is_reused_and_a_corrupt_file_is_regenerated(tmp_path, monkeypatch):
    first = sd.load_spoken_digits(num_speakers=1, repeats=1, cache_dir=tmp_path)
    calls = []
    real = sd.synthesize_many
    monkeypatch.setattr(sd, "synthesize_many", lambda reqs: calls.extend(reqs) or real(reqs))
    again = sd.load_spoken_digits(num_speakers=1, repeats=1, cache_dir=tmp_path)
    assert calls == []  # all 10 utterances came from the cache
    assert all(np.allclose(x, y) for x, y in zip(first.waveforms, again.waveforms, strict=True))

    broken = next(tmp_path.rglob("s000_4_0.wav"))
    broken.write_bytes(b"RIFF garbage")
    with pytest.warns(UserWarning, match="s000_4_0.wav"):
        repaired = sd.load_spoken_digits(num_speakers=1, repeats=1, cache_dir=tmp_path)
    assert len(calls) == 1 and calls[0]["text"] == "four"
    assert _rms(repaired.waveforms[4]) > 0.01
    assert sf.read(broken)[0].size > 0  # the cache file itself was rewritten


def test_speaker_disjoint_split(tmp_path):
    data = sd.load_spoken_digits(num_speakers=5, repeats=1, cache_dir=tmp_path)
    train, test = sd.speaker_disjoint_split(data, test_fraction=0.4, seed=0)
    assert len(train) + len(test) == len(data)
    assert not set(train.speakers) & set(test.speakers)
    assert len(set(test.speakers)) == 2 and set(test.labels) == set(range(10))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sd.speaker_table(0, 0), "num_speakers"),
        (lambda: sd.load_spoken_digits(repeats=0), "repeats"),
        (lambda: sd.synthesize("one", "no-such-voice"), "no-such-voice"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_dying_synthesis_worker_raises_instead_of_hanging():
    import os

    from avfed.data.sources.espeak import run_in_fresh_process

    assert run_in_fresh_process(divmod, (7, 2), timeout=60, what="divmod") == (3, 1)
    with pytest.raises(RuntimeError, match="crashing worker: the worker process died"):
        run_in_fresh_process(os._exit, (3,), timeout=60, what="crashing worker")


def test_a_stuck_synthesis_worker_is_killed_after_its_timeout():
    import time

    from avfed.data.sources.espeak import run_in_fresh_process

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="sleeper: no result within 1 s"):
        run_in_fresh_process(time.sleep, (120,), timeout=1, what="sleeper")
    assert time.perf_counter() - started < 60
