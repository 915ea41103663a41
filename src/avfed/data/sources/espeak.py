"""A minimal ctypes driver for libespeak-ng, as shipped in the ``espeakng-loader`` wheel.

Synchronous mode hands every block of synthesised 16-bit samples to a callback; we
collect them per utterance. The library keeps global state, and that state carries
over between utterances (the waveform generator's
phase, among others, which neither re-initialisation nor the random seed resets): the
same word comes out a few samples different depending on what was spoken before.
:func:`speak_isolated` therefore synthesises each utterance in a child forked from a
freshly initialised engine, so every utterance starts from the same state and the
output is bit-identical whatever the order or the process.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SAMPLE_RATE = 22050  # what espeak-ng's synchronous output produces

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK = 0
_NOISE_SEED = 1  # breath/frication noise: fixed, so equal requests give equal samples

# Generous bounds (an utterance takes ~20 ms): a stuck synthesis fails instead of hanging.
_STARTUP_S = 120.0
_PER_UTTERANCE_S = 2.0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Engine:
    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        data_dir = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir, 0)
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"espeak-ng initialised at {rate} Hz, expected {SAMPLE_RATE} Hz "
                               f"(data folder {data_dir.decode()})")
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._libc = ctypes.CDLL(None)
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples: ctypes.POINTER(ctypes.c_short), count: int,  # type: ignore[valid-type]
                 _events: int) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    def reset_noise(self) -> None:
        """Fix both noise sources (espeak's own generator and libc's ``rand``)."""
        self.lib.espeak_ng_SetRandSeed(_NOISE_SEED)
        self._libc.srand(_NOISE_SEED)

    def say(self, text: str, voice: str, pitch: int, pitch_range: int, speed: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng has no voice '{voice}'")
        for param, value in ((_PARAM_RATE, speed), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, 100)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks = []
        encoded = text.encode() + b"\0"
        status = self.lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                       None, None)
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng failed to synthesise {text!r} with voice '{voice}'")
        self.lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, np.float32)
        return (np.concatenate(self._chunks).astype(np.float32) / 32768.0)


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fork_each(requests: Sequence[dict[str, Any]]) -> list[bytes]:
    """Runs in a fresh process: initialise once, then fork a child per utterance."""
    engine = _Engine()
    results: list[bytes] = []
    for req in requests:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak from the pristine state, send the samples, vanish
            os.close(read_fd)
            try:
                engine.reset_noise()
                wave = engine.say(req["text"], req["voice"], req["pitch"], req["pitch_range"],
                                   req["speed"])
                payload = b"ok" + wave.tobytes()
            except Exception as err:  # noqa: BLE001 - reported to the parent as text
                payload = b"er" + str(err).encode()
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
            os._exit(0)
        os.close(write_fd)
        payload = _read_to_end(read_fd)
        os.close(read_fd)
        os.waitpid(pid, 0)
        results.append(payload)
    return results


# The worker is a new interpreter started with ``python -c`` rather than a
# multiprocessing "spawn" child: spawn re-imports the caller's main script in the
# child, so a script that calls the data functions at module level (no
# ``if __name__ == "__main__":`` guard) would start its own work again there and die.
# ``python -c`` imports nothing of the caller but this module.
_WORKER = "import sys; from avfed.data.sources.espeak import _worker_main; _worker_main()"


def _worker_main() -> None:
    """The fresh process: read ``(sys.path, fn, args)`` from stdin, send the pickled
    ``("ok", result)`` or ``("raised", error)`` back on stdout."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the result stream
    sys.path[:] = pickle.load(stdin)
    fn, args = pickle.load(stdin)
    try:
        result: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as err:  # noqa: BLE001 - handed to the parent, which re-raises
        result = ("raised", err)
    pickle.dump(result, stdout, protocol=pickle.HIGHEST_PROTOCOL)
    stdout.flush()


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything up to EOF on ``fd``; ``None`` when the deadline passes first."""
    chunks = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def run_in_fresh_process(fn: Callable[..., Any], args: tuple, *, timeout: float,
                         what: str) -> Any:
    """``fn(*args)`` in a newly started interpreter (a small clean process, safe to fork).

    ``fn`` must be importable by name (a module-level function). One process and a
    pipe rather than a ``multiprocessing.Pool``: if the worker dies (a crash inside a C
    library, the OOM killer) a Pool waits forever for its lost task, while a closed
    pipe is seen at once; a worker that outlives ``timeout`` is killed. Either way the
    caller gets a ``RuntimeError`` naming ``what`` instead of a hang. An exception
    raised by ``fn`` is re-raised here. The caller's script is never re-imported, so no
    ``if __name__ == "__main__":`` guard is needed around the call.
    """
    request = (pickle.dumps(list(sys.path)) +
               pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL))
    process = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    try:
        try:
            process.stdin.write(request)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the worker died before reading: reported below as a death
        payload = _read_until(process.stdout.fileno(), time.monotonic() + timeout)
        if payload is None:
            raise RuntimeError(f"{what}: no result within {timeout:.0f} s")
        try:
            status, value = pickle.loads(payload)
        except Exception:  # noqa: BLE001 - truncated or empty: the worker did not finish
            raise RuntimeError(f"{what}: the worker process died (exit status "
                               f"{process.wait()})") from None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
    if status == "raised":
        raise value
    return value


def speak_isolated(requests: Sequence[dict[str, Any]]) -> list[np.ndarray]:
    """Synthesise many utterances, each from a pristine engine state (deterministic).

    Each request has ``text``, ``voice``, ``pitch``, ``pitch_range`` and ``speed``.
    """
    if not requests:
        return []
    timeout = _STARTUP_S + _PER_UTTERANCE_S * len(requests)
    payloads = run_in_fresh_process(_fork_each, (list(requests),), timeout=timeout,
                                    what=f"espeak-ng synthesising {len(requests)} utterances")
    waves = []
    for req, payload in zip(requests, payloads, strict=True):
        if payload[:2] != b"ok":
            raise ValueError(f"espeak-ng failed on {req['text']!r} with voice "
                             f"'{req['voice']}': {payload[2:].decode(errors='replace')}")
        waves.append(np.frombuffer(payload[2:], dtype=np.float32).copy())
    return waves
