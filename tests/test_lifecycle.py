"""One Ctrl-C (or SIGTERM) stops a run within seconds, engine included, and says so."""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from avfed.lifecycle import descendant_pids

# long enough that the run is still busy when the signal arrives
SLOW = ["fl.num_clients=3", "fl.sim_cpus=2", "fl.rounds=50", "data.image_size=16",
        "model.name=resnet10_cifar", "model.args.width=4", "eval.probe_max_iter=100"]


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> list[str]:
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1.0):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if text in line:
                return lines
    raise AssertionError(f"'{text}' never printed; output so far:\n{''.join(lines)}")


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("central, signum, code", [
    (False, signal.SIGINT, 130), (False, signal.SIGTERM, 143), (True, signal.SIGINT, 130)],
    ids=["federated-SIGINT", "federated-SIGTERM", "central-SIGINT"])
def test_one_signal_stops_the_run_and_marks_its_folder(tmp_path, central, signum, code):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "avfed.cli", "run", *SLOW, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd + (["--central"] if central else []), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_line(proc, "round   1/", timeout=240)  # well inside the run
        children = descendant_pids(proc.pid)
        if not central:
            assert children, "the simulation engine should have started processes"
        sent = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=20)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = proc.stdout.read()
    assert proc.returncode == code, output
    assert took < 20
    assert "Traceback" not in output and "SIGTERM received" not in output
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == signal.Signals(signum).name
    time.sleep(1.0)  # killed processes are reaped by init
    assert not [pid for pid in children if _alive(pid)], "engine processes left behind"
