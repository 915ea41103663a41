"""Speed of each recipe's local training step: avfed's loop vs a minimal plain PyTorch
loop, in fp32, bf16 autocast and bf16 + channels_last, on 1 and 2 threads.

Both loops train the same model (a copy of the task's, same initial weights), with the
same optimizer, loss, batch size and augmentation; the plain loop is the few lines a
PyTorch user would write (index a batch, two augmented views, loss, backward, step).
The machine may be shared, so every number is a median over rounds in which the
variants and the two loops run interleaved, and the ratios (avfed / plain, variant /
fp32) are what to read. Achieved FLOP/s are set against a large GEMM on the same
threads (fp32, and bf16 for the bf16 rows).

    python benchmarks/train_step.py                       # simclr_digits, 1 and 2 threads
    python benchmarks/train_step.py --recipes simclr_digits fedrepopt_supervised_digits
    python benchmarks/train_step.py --startup              # where the road to round 1 goes
    python benchmarks/train_step.py --round1 --recipes simclr_cluttered --before <commit>
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import markdown_table, publish

from avfed.build import build_run
from avfed.config import load_config
from avfed.optimizers import make_optimizer
from avfed.precision import bf16_native
from avfed.tasks import ClientData, TrainContext

VARIANTS = {  # label → (train.precision, train.memory_format)
    "fp32": ("fp32", "contiguous"),
    "bf16": ("bf16", "contiguous"),
    "bf16 + channels_last": ("bf16", "channels_last"),
}


def gemm_flops(dtype: torch.dtype, n: int = 1024, repeats: int = 3) -> float:
    """FLOP/s of an n×n×n matrix product (median of ``repeats``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


class Bench:
    """One recipe in one variant: its task, a data slice, and both loops."""

    def __init__(self, recipe: str, variant: str, steps: int, overrides: list[str]) -> None:
        precision, memory_format = VARIANTS[variant]
        cfg = load_config(recipe, [f"train.precision={precision}",
                                   f"train.memory_format={memory_format}",
                                   "train.local_epochs=1", *overrides])
        self.cfg = cfg
        built = build_run(cfg, with_strategy=False)
        self.task = built.task
        if cfg.task.name not in ("ssl", "supervised"):
            raise SystemExit(f"{recipe}: only ssl and supervised tasks have a plain loop here")
        self.ssl = cfg.task.name == "ssl"
        pooled = built.pooled_data()
        modality = next(iter(pooled.inputs))
        n = min(steps * cfg.train.batch_size, len(pooled.inputs[modality]))
        self.modality, self.steps = modality, n // cfg.train.batch_size
        self.data = ClientData(0, {modality: pooled.inputs[modality][:n]},
                               {modality: pooled.labels[modality][:n]},
                               {modality: pooled.indices[modality][:n]})
        self.initial = copy.deepcopy(self.task.model.state_dict())
        self.plain_model = copy.deepcopy(self.task.model)  # same weights and memory format
        self.views = self.steps * cfg.train.batch_size * (2 if self.ssl else 1)
        self.bf16 = precision == "bf16"
        self.channels_last = memory_format == "channels_last"

    def avfed(self) -> float:
        """Views per second of one round of the task's own training."""
        self.task.model.load_state_dict(self.initial)
        start = time.perf_counter()
        self.task.train(self.data, TrainContext(seed=0, server_round=1))
        return self.views / (time.perf_counter() - start)

    def plain(self) -> float:
        """Views per second of the minimal loop a PyTorch user would write."""
        model = self.plain_model
        model.load_state_dict(self.initial)
        start = time.perf_counter()  # both loops' times include making the optimizer
        optimizer = make_optimizer(model, self.cfg.train)
        augment = self.task.augment[self.modality]
        x_all = self.data.inputs[self.modality]
        y_all = torch.as_tensor(self.data.labels[self.modality], dtype=torch.long)
        batch = self.cfg.train.batch_size
        order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))
        model.train()
        for b in range(self.steps):
            idx = order[b * batch:(b + 1) * batch]
            x = x_all[idx]
            with torch.no_grad():
                views = [augment(x), augment(x)] if self.ssl else [augment(x)]
            if self.channels_last:
                views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                if self.ssl:
                    loss = model.training_loss(*views)
                else:
                    loss = F.cross_entropy(model(views[0]), y_all[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if self.ssl:
                model.after_step()
            loss.item()
        return self.views / (time.perf_counter() - start)

    def step_flops(self) -> float:
        """FLOPs of one training step (forward + backward), counted by torch."""
        from torch.utils.flop_counter import FlopCounterMode

        model = copy.deepcopy(self.plain_model).train()
        x = self.data.inputs[self.modality][: self.cfg.train.batch_size]
        y = torch.as_tensor(self.data.labels[self.modality][: len(x)], dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            loss = model.training_loss(x, x) if self.ssl else F.cross_entropy(model(x), y)
            loss.backward()
        return float(counter.get_total_flops())


def startup(recipe: str, overrides: list[str], append: bool) -> None:
    """Where the time before round 1 goes: the pieces a federated run goes through before
    its first client trains, timed one after another in one process (in a real run the
    server's part and the client actors' start-up overlap on the machine's cores)."""
    import subprocess
    import sys

    def timed(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    codes = {"python -c pass": "pass",
             "avfed recipes (listing)": "from avfed.cli import main; main(['recipes'])",
             "import the client app (torch, Flower, avfed) in a fresh process":
             "import avfed.fl.client_app"}
    rows = [[label, f"{timed(code):.2f}"] for label, code in codes.items()]
    import ray

    cfg = load_config(recipe, overrides)
    start = time.perf_counter()
    built = build_run(cfg)
    rows.append(["build_run: data, partitions, task, strategy",
                 f"{time.perf_counter() - start:.2f}"])
    for label, fn in [("baselines (raw-input kNN + linear probe)", built.task.baselines),
                      ("round-0 evaluation (features, kNN, probe, RankMe)", built.task.evaluate),
                      ("ray.init (2 CPUs)", lambda: ray.init(num_cpus=2, include_dashboard=False,
                                                             logging_level="ERROR")),
                      ("one Ray worker importing the client app",
                       lambda: ray.get(ray.remote(lambda: __import__(
                           "avfed.fl.client_app")).remote()))]:
        start = time.perf_counter()
        fn()
        rows.append([label, f"{time.perf_counter() - start:.2f}"])
    ray.shutdown()
    publish("Road to round 1 (benchmarks/train_step.py --startup)",
            markdown_table(["piece", "seconds"], rows),
            f"Recipe {recipe.rsplit('/', 1)[-1]}; each piece timed alone, in order, on a "
            "shared and loaded machine: read the seconds as shares of the whole, not as "
            "absolute start-up times.", append=append)


ROUND_LINE = re.compile(r"^round\s+(\d+)/\d+")
ROUND_SECONDS = re.compile(r"\s(\d+\.\d)s\b")  # the round's own time on its line


def export_tree(ref: str, folder: Path) -> Path:
    """The ``src`` of commit ``ref`` in ``folder`` (git archive: no checkout touched)."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "src"],
                             check=True, capture_output=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def timed_run(src: Path, cache: Path, runs: Path, recipe: str, overrides: list[str]
              ) -> tuple[dict[str, float], str]:
    """``avfed run`` of ``src``'s code in a fresh process, with the seconds from its
    start to: the baselines printed, round 0's scores printed, round 1's line (after
    its training and evaluation), and the exit; plus round 1's own seconds. Also the
    printed baseline and round-0 scores, which must not depend on the code or cache."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1",
           "AVFED_CACHE": str(cache)}
    code = "import sys; from avfed.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", code, "run", f"recipe={recipe}", "fl.rounds=1",
               f"output_dir={runs}", *overrides]
    marks: dict[str, float] = {}
    scores: list[str] = []
    start = time.perf_counter()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - start
            if line.startswith("baseline"):
                marks.setdefault("baselines", now)
                scores.append(line.strip())
            found = ROUND_LINE.search(line)
            if found and found.group(1) == "0":
                marks["round 0"] = now
                scores.append(line.split(" · ", 1)[-1].strip())
            elif found and found.group(1) == "1":
                seconds = ROUND_SECONDS.search(line)
                marks["round 1"] = now
                marks["round 1 itself"] = float(seconds.group(1)) if seconds else float("nan")
    marks["exit"] = time.perf_counter() - start
    if proc.returncode != 0 or "round 1" not in marks:
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode})")
    return marks, " / ".join(scores)


def import_seconds(src: Path) -> float:
    """A fresh process importing the client app from ``src`` (what every actor does)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import avfed.fl.client_app"], check=True,
                   env={**os.environ, "PYTHONPATH": str(src)})
    return time.perf_counter() - start


def round_one(recipe: str, before: str | None, repeats: int, overrides: list[str],
              append: bool) -> None:
    """Seconds to round 1 of ``avfed run recipe=RECIPE fl.rounds=1`` end to end: this
    tree with a cold and a warm evaluation cache, and (``before``) an earlier commit's
    code, run alternately so that each repetition sees the same load."""
    root = Path(__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix="avfed-round1-"))
    # HEAD's code, frozen: an edit to the working tree mid-way changes neither the data
    # nor the cache key (avfed's source is part of it)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    src = export_tree(head, work / "head")
    trees = {f"{head}, cold cache": src, f"{head}, warm cache": src}
    if before:
        trees = {f"{before} (before)": export_tree(before, work / "before"), **trees}
    times: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    imports: dict[str, list[float]] = {label: [] for label in trees if "warm" not in label}
    cache = work / "cache"
    printed: set[str] = set()
    for repeat in range(repeats):
        order = list(trees.items())
        if repeat % 2:  # the earlier code first, then last: no variant always follows another
            order = order[1:] + order[:1] if before else order
        for label, src in order:
            if "warm" not in label:  # the earlier code has no such cache: always cold
                shutil.rmtree(cache / "eval", ignore_errors=True)
                imports[label].append(import_seconds(src))
            marks, scores = timed_run(src, cache, work / "runs", recipe, overrides)
            printed.add(scores)
            times[label].append(marks)
            print(f"repeat {repeat + 1}/{repeats} · {label}: " + ", ".join(
                f"{k} {v:.1f}s" for k, v in marks.items()), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    cold = times[f"{head}, cold cache"]
    for label, marks in times.items():
        def median(of: Callable[[dict[str, float]], float], runs: list = marks) -> str:
            return f"{statistics.median(of(m) for m in runs):.1f}"

        def paired(of: Callable[[dict[str, float]], float], runs: list = marks) -> str:
            """Median over repetitions of this run's time ÷ the cold run's of the same
            repetition: robust to the load drifting from one repetition to the next."""
            ratios = [of(m) / of(c) for m, c in zip(runs, cold, strict=True)]
            return f"{statistics.median(ratios):.2f}"

        rows.append([label, median(lambda m: m["baselines"]), median(lambda m: m["round 0"]),
                     median(lambda m: m["round 1 itself"]),
                     median(lambda m: m["round 0"] + m["round 1 itself"]),
                     median(lambda m: m["exit"]), paired(lambda m: m["round 0"]),
                     paired(lambda m: m["round 0"] + m["round 1 itself"]),
                     f"{statistics.median(imports[label]):.1f}" if label in imports else "="])
    table = markdown_table(["code", "baselines printed", "round 0 printed = round 1 sent",
                            "round 1's own s", "first updates in (sent + own)", "exit",
                            "round 1 sent ÷ cold", "first updates ÷ cold",
                            "client-app import, fresh process"], rows)
    name = recipe.rsplit("/", 1)[-1]
    note = (f"`avfed run recipe={name} fl.rounds=1 {' '.join(overrides)}`: seconds from the "
            f"process start, medians of {repeats} repetitions; within each repetition the "
            "variants run one after the other, so each sees about the same load. Before "
            "round 0's line the run has imported, built the run, started Ray and scored the "
            "baselines and round 0; the server then sends round 1. Round 1's own seconds are "
            "those its progress line prints: the client actors start, import the client app, "
            "build the run and train, until the last reply. Cold: the evaluation cache "
            "emptied before the run; warm: the cache the cold run had just filled. '÷ cold': "
            "median over repetitions of the ratio to the cold run of the same repetition. "
            "Both codes run from `git archive` snapshots. The "
            "machine was shared with other CPU-heavy jobs (2 cores, load average above 4): "
            "read the differences between rows, not the absolute seconds. The printed "
            "baseline and round-0 scores were "
            + ("the same in every run: " + next(iter(printed)) if len(printed) == 1 else
               "NOT the same in every run: " + " | ".join(sorted(printed))) + ".")
    publish("Road to round 1, end to end: before / after, cold / warm cache "
            "(benchmarks/train_step.py --round1)", table, note, append=append)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["simclr_digits"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--no-append", action="store_true")
    parser.add_argument("--startup", action="store_true",
                        help="time the road to round 1 of the first recipe instead")
    parser.add_argument("--round1", action="store_true",
                        help="time `avfed run` of the first recipe to round 1 end to end, "
                             "cold vs warm evaluation cache")
    parser.add_argument("--before", help="with --round1: also time this commit's code")
    parser.add_argument("--repeats", type=int, default=3, help="with --round1: repetitions")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every recipe")
    args = parser.parse_args()
    if args.round1:
        round_one(args.recipes[0], args.before, args.repeats, args.overrides,
                  append=not args.no_append)
        return
    if args.startup:
        startup(args.recipes[0], args.overrides, append=not args.no_append)
        return

    native, evidence = bf16_native("cpu")
    rows, gemms = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        gemm_32: list[float] = []
        gemm_16: list[float] = []
        for recipe in args.recipes:
            benches = {v: Bench(recipe, v, args.steps, args.overrides) for v in VARIANTS}
            flops = benches["fp32"].step_flops()
            for bench in benches.values():  # warm-up: first calls build kernels
                bench.avfed()
                bench.plain()
            ours: dict[str, list[float]] = {v: [] for v in VARIANTS}
            plain: dict[str, list[float]] = {v: [] for v in VARIANTS}
            ratio: dict[str, list[float]] = {v: [] for v in VARIANTS}
            gain: dict[str, list[float]] = {v: [] for v in VARIANTS}  # vs this round's fp32
            share32: dict[str, list[float]] = {v: [] for v in VARIANTS}  # of fp32 GEMM
            share16: dict[str, list[float]] = {v: [] for v in VARIANTS}  # of same-dtype GEMM
            for _ in range(args.rounds):
                # the references are measured in every round, under that round's load
                fp32_gemm, bf16_gemm = gemm_flops(torch.float32), gemm_flops(torch.bfloat16)
                gemm_32.append(fp32_gemm)
                gemm_16.append(bf16_gemm)
                measured = {}
                for variant, bench in benches.items():
                    a, p = bench.avfed(), bench.plain()
                    measured[variant] = a
                    ours[variant].append(a)
                    plain[variant].append(p)
                    ratio[variant].append(a / p)
                    achieved = flops * a / (bench.views / bench.steps)
                    share32[variant].append(achieved / fp32_gemm)
                    share16[variant].append(achieved / (bf16_gemm if bench.bf16 else fp32_gemm))
                for variant in benches:
                    gain[variant].append(measured[variant] / measured["fp32"])
            name = recipe.rsplit("/", 1)[-1]
            for variant, bench in benches.items():
                speed = statistics.median(ours[variant])
                achieved = flops * speed / (bench.views / bench.steps)
                rows.append([name, threads, variant, f"{speed:.0f}",
                             f"{statistics.median(plain[variant]):.0f}",
                             f"{statistics.median(ratio[variant]):.3f}",
                             f"{statistics.median(gain[variant]):.2f}×",
                             f"{achieved / 1e9:.1f}",
                             f"{100 * statistics.median(share32[variant]):.0f} %",
                             f"{100 * statistics.median(share16[variant]):.0f} %"])
            print(markdown_table(["recipe", "threads", "step", "avfed views/s"], [
                r[:4] for r in rows[-len(VARIANTS):]]))
        gemms.append(f"{threads} thread(s): fp32 GEMM {statistics.median(gemm_32) / 1e9:.0f} "
                     f"GFLOP/s, bf16 GEMM {statistics.median(gemm_16) / 1e9:.0f} GFLOP/s "
                     f"(medians over rounds)")
    table = markdown_table(["recipe", "threads", "step", "avfed views/s", "plain views/s",
                            "avfed / plain", "vs fp32", "GFLOP/s", "% of fp32 GEMM",
                            "% of same-dtype GEMM"], rows)
    note = (f"Native bf16 on this CPU: {'yes' if native else 'no'} ({evidence}); "
            "`train.precision=auto` resolves to "
            f"{'bf16' if native else 'fp32'} here. Medians of {args.rounds} interleaved "
            f"rounds of {args.steps} steps after a warm-up round; avfed / plain, vs fp32 and "
            "the GEMM shares are medians of per-round ratios (each round measures its own "
            "GEMM references, under that round's load). GEMM references (1024³): "
            + "; ".join(gemms) + ". FLOPs "
            "per step from torch's FLOP counter (fp32 forward + backward; element-wise work "
            "uncounted). The machine was shared with other jobs: absolute views/s vary, "
            "ratios within one round are what to compare. No GPU was available for these "
            "measurements.")
    publish("Training-step speed: precision and memory format (benchmarks/train_step.py)",
            table, note, append=not args.no_append)


if __name__ == "__main__":
    main()
