"""How do rounds scale with the number of clients, and what does the deployment engine cost?

1. Simulation with N = 10 / 100 / 1000 clients, 10 sampled per round (fraction_train =
   10 / N): wall time per round and peak memory of the server process (the ServerApp,
   Flower's engine driver and the run build) and of the engine's other processes (Ray
   and its ClientApp actors, summed over processes, sampled every 0.2 s). Only sampled
   clients train, so neither should grow much with N. Each N runs in its own process,
   so that peaks do not carry over.
2. The same work (3 clients, all sampled) on the simulation engine and on a local
   deployment (``avfed federate``: a SuperLink and 3 SuperNodes): mean round time.

1,000 clients need at least 2,000 training examples; scikit-learn's digits hold 1,797,
so the runs here use ``scale_digits``: the digits' training split three times over,
each copy with its own small pixel noise (registered below, named as a plugin).

    python benchmarks/scale.py [--sizes 10 100 1000] [--rounds 3] [--no-deploy] [--no-append]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = ["data.image_size=16", "data.partitioner=iid", "data.test_fraction=0.2",
        "model.name=resnet10_cifar", "model.args.width=4", "ssl.hidden_dim=16",
        "ssl.projection_dim=8", "train.local_epochs=1", "train.batch_size=16",
        "eval.probe_max_iter=50", "fl.eval_every=100", "fl.timeout_s=600"]


def register_scale_digits() -> None:
    import numpy as np
    import torch

    from avfed.data.catalog import data_sources, register_source
    from avfed.data.sources.image_digits import load_image_digits

    if "scale_digits" in data_sources.describe():
        return

    @register_source("scale_digits", "image", "digits' training split 3× with pixel noise")
    def _scale_digits(cfg, seed, root):
        train, test = load_image_digits(cfg.image_size, cfg.test_fraction, seed)
        generator = torch.Generator().manual_seed(seed)
        copies = [(train.images + 0.05 * torch.randn(train.images.shape, generator=generator)
                   ).clamp(0, 1) for _ in range(3)]
        bigger = type(train)(torch.cat(copies), np.tile(train.labels, 3), train.classes)
        return bigger, test


if __name__ != "__main__":  # imported as the recipe's plugin (server and every actor)
    register_scale_digits()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_size(num_clients: int, rounds: int) -> dict:
    """Run the simulation for one N in this process; returns its measurements."""
    from avfed.build import build_run
    from avfed.config import load_config
    from avfed.fl.simulation import run_federated
    from avfed.lifecycle import descendant_pids
    from avfed.runs import RunDir

    sys.path.insert(0, str(HERE))
    cfg = load_config("simclr_digits", [
        *BASE, "plugins=[scale]", "data.source=scale_digits", f"fl.rounds={rounds}",
        f"fl.num_clients={num_clients}", f"fl.fraction_train={min(1.0, 10 / num_clients)}",
        "fl.sim_cpus=2"])
    engine_peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            engine_peak[0] = max(engine_peak[0], sum(rss_kib(p) for p in descendant_pids()))

    threading.Thread(target=sample, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run_federated(build_run(cfg), RunDir.create(cfg, Path(tmp) / "run"))
        wall = time.perf_counter() - started
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text()
                .splitlines()]
        clients = [json.loads(x) for x in (Path(tmp) / "run" / "clients.jsonl").read_text()
                   .splitlines()]
    done.set()
    rounds_s = [r["round_s"] for r in rows if r["round"] >= 2]
    examples = [c["num-examples"] for c in clients if c["round"] >= 2]
    return {"clients": num_clients, "sampled": rows[-1]["clients_ok"],
            "examples": sum(examples) / max(1, len(rounds_s)),
            "round_s": sum(rounds_s) / len(rounds_s), "wall_s": wall,
            "server_mib": own_peak_kib() / 1024, "engine_mib": engine_peak[0] / 1024}


def in_subprocess(num_clients: int, rounds: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(num_clients), "--rounds",
                          str(rounds)], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"N={num_clients} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_round_s(run_dir: Path) -> float:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rounds_s = [r["round_s"] for r in rows if r["round"] >= 2]
    return sum(rounds_s) / len(rounds_s)


def deploy_vs_simulation(rounds: int) -> dict:
    """3 clients, all sampled, on the simulation engine and on a local deployment."""
    work = ["recipe=simclr_digits", *BASE, f"fl.rounds={rounds}", "fl.num_clients=3"]
    avfed = str(Path(sys.executable).parent / "avfed")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        subprocess.run([avfed, "run", *work, "fl.sim_cpus=2", "--run-dir",
                        str(tmp_path / "sim")], check=True, capture_output=True, timeout=3600)
        subprocess.run([avfed, "federate", *work, f"output_dir={tmp_path / 'dep'}",
                        "--nodes", "3", "--port", "0", "--workdir", str(tmp_path / "fed")],
                       check=True, capture_output=True, timeout=3600)
        (deployed,) = (tmp_path / "dep").iterdir()
        return {"simulation": mean_round_s(tmp_path / "sim"),
                "deployment": mean_round_s(deployed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-deploy", action="store_true")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    if args.one is not None:
        import scale  # noqa: F401 - registers scale_digits here as the actors will

        print(json.dumps(one_size(args.one, args.rounds)))
        return
    from common import markdown_table, publish

    results = []
    for n in args.sizes:
        results.append(in_subprocess(n, args.rounds))
        print(results[-1], flush=True)
    table = markdown_table(
        ["clients", "sampled per round", "examples trained per round", "round wall (s)",
         "ms per example", "server peak RSS (MiB)", "engine peak RSS (MiB, all processes)"],
        [[r["clients"], r["sampled"], f"{r['examples']:.0f}", f"{r['round_s']:.2f}",
          f"{1000 * r['round_s'] / r['examples']:.1f}", f"{r['server_mib']:.0f}",
          f"{r['engine_mib']:.0f}"] for r in results])
    load = os.getloadavg()[0]
    note = (f"Simulation, 2 cores for the engine (fl.sim_cpus=2), {args.rounds} rounds, "
            "round wall = mean of rounds 2.. (round 1 includes actor start-up); "
            "scale_digits, tiny SimCLR ResNet-10. The data are split over all N clients, "
            "so the 10 sampled hold 10/N of it: per-round work shrinks with N (hence the "
            "per-example column). Machine shared with other jobs "
            f"(1-min load average {load:.1f} at the end), so absolute times are loose; "
            "compare within the table.")
    if not args.no_deploy:
        both = deploy_vs_simulation(args.rounds)
        table += "\n\n" + markdown_table(
            ["engine (3 clients, all sampled)", "round wall (s)"],
            [["simulation (Ray actors)", f"{both['simulation']:.2f}"],
             ["deployment (SuperLink + 3 SuperNodes, avfed federate)",
              f"{both['deployment']:.2f}"],
             ["ratio deployment / simulation", f"{both['deployment'] / both['simulation']:.1f}×"]])
        note += (" Deployment rounds pay for a fresh ClientApp process per call on every "
                 "node (Flower's subprocess isolation: import torch, build the run), which "
                 "simulation actors pay once.")
    publish("Scale: clients per run, and deployment vs simulation (benchmarks/scale.py)",
            table, note, append=not args.no_append)


if __name__ == "__main__":
    main()
