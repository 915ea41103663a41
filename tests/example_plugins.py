"""Plugins the engine tests name in ``plugins=[example_plugins]``.

``ExampleClassifierTask`` is the smallest complete task: a backbone plus a linear head
trained with cross-entropy on the client's labels, scored by test accuracy (central,
and per client with ``fl.federated_eval``). It shows everything a new kind of training
implements (``train`` and ``evaluate``, optionally ``evaluate_local``; the engine does
the rest). ``FlakyTask`` adds failures on chosen clients, and ``exploding_cnn`` is
a model whose training forward pass raises, to test how runs fail.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from avfed.models import register_model
from avfed.tasks import ClientData, Task, TrainContext, TrainOutcome, register_task


class ExampleClassifierTask(Task):
    name = "example_classifier"

    def __init__(self, parts, lr: float = 0.05) -> None:
        self.cfg, self.splits, self.lr = parts.cfg, parts.splits, lr
        backbone = parts.backbone()
        num_classes = int(max(train.labels.max() for train, _ in parts.splits.values())) + 1
        self.model = nn.Sequential(backbone, nn.Linear(backbone.num_features, num_classes))

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(context.seed)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        (modality, x), = data.inputs.items()
        y = torch.from_numpy(data.labels[modality]).long()
        self.model.train()
        losses = []
        for idx in torch.randperm(len(x), generator=generator).split(32):
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(self.model(x[idx]), y[idx])
            if context.regularizer is not None:
                loss = loss + context.regularizer()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return TrainOutcome(sum(losses) / len(losses), len(x), time.perf_counter() - started)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        (train, test), = self.splits.values()
        self.model.eval()
        predicted = self.model(test.images).argmax(1).numpy()
        return {"accuracy": float((predicted == test.labels).mean())}

    @torch.no_grad()
    def evaluate_local(self, data: ClientData) -> dict[str, float]:
        """Accuracy on one client's held-out examples (federated evaluation)."""
        (modality, x), = data.inputs.items()
        self.model.eval()
        predicted = self.model(x).argmax(1).numpy()
        return {"accuracy": float((predicted == data.labels[modality]).mean())}


class FlakyTask(ExampleClassifierTask):
    """Clients in ``fail_clients`` raise; clients in ``slow_clients`` sleep ``sleep_s``."""

    name = "flaky"

    def __init__(self, parts, fail_clients: list[int] | None = None,
                 slow_clients: list[int] | None = None, sleep_s: float = 0.0) -> None:
        super().__init__(parts)
        self.fail_clients = list(fail_clients or [])
        self.slow_clients = list(slow_clients or [])
        self.sleep_s = sleep_s

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        if data.client_id in self.fail_clients:
            raise RuntimeError(f"disk full on client {data.client_id}")
        if data.client_id in self.slow_clients:
            time.sleep(self.sleep_s)
        return super().train(data, context)


@register_task("example_classifier", "tests: backbone + linear head, cross-entropy")
def example_classifier(parts, lr: float = 0.05) -> ExampleClassifierTask:
    return ExampleClassifierTask(parts, lr=lr)


@register_task("flaky", "tests: the example classifier, failing or slow on chosen clients")
def flaky(parts, fail_clients: list[int] | None = None, slow_clients: list[int] | None = None,
          sleep_s: float = 0.0) -> FlakyTask:
    return FlakyTask(parts, fail_clients, slow_clients, sleep_s)


class _Exploding(nn.Module):
    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3)
        self.num_features = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("exploding_cnn cannot train")
        return self.conv(x).mean((2, 3))


@register_model("exploding_cnn", "tests: a model whose training forward pass raises")
def exploding_cnn(in_chans: int = 3) -> nn.Module:
    return _Exploding(in_chans)
