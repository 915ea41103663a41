"""Supervised training (``task.name=supervised``): the run's backbone plus one linear head,
trained with cross-entropy on the clients' labels, scored by top-1 test accuracy.

The same task serves three purposes: the supervised reference an SSL result is read
against (same backbone, data and schedule, with labels), federated supervised
learning as papers such as FedRepOpt report it, and, through :mod:`avfed.tasks.finetune`,
fine-tuning a pre-trained backbone. One augmented view per example and step (the run's
augmentations), optional label smoothing and mixup, the optimizer of ``train.optimizer``
(RepOpt included, for ``repopt_*`` backbones). A run with image and audio trains one
head on both, a batch holding one modality at a time as in SSL training.

A backbone with re-parameterizable blocks (RepVGG, RepGhost, AudioRepInceptionNeXt) is
also scored in its folded deploy form (``deploy_accuracy``): the network that would be
exported, which must score exactly what the training form scores in eval mode.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfed.audio.augment import reset_mixup_memories
from avfed.config import ConfigError
from avfed.eval.features import extract_features
from avfed.eval.protocols import raw_input_scores
from avfed.models.multimodal import MultiModalBackbone
from avfed.models.reparam import Reparameterizable, reparameterize_model
from avfed.optimizers import make_optimizer
from avfed.precision import Acceleration
from avfed.tasks.base import ClientData, Task, TrainContext, TrainOutcome
from avfed.tasks.parts import RunParts
from avfed.tasks.registry import register_task
from avfed.training import batch_plan


class Classifier(nn.Module):
    """A backbone and one linear head, shared by every modality of the run.

    ``standardize`` puts a BatchNorm without affine terms between them (features
    standardised per dimension, as a linear probe standardises them): the linear head of
    a frozen backbone then trains at one learning rate whatever the features' scale.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, standardize: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.norm = (nn.BatchNorm1d(backbone.num_features, affine=False) if standardize
                     else nn.Identity())
        self.head = nn.Linear(backbone.num_features, num_classes)

    def features(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        if modality is not None and isinstance(self.backbone, MultiModalBackbone):
            return self.norm(self.backbone({modality: x}))
        return self.norm(self.backbone(x))

    def forward(self, x: torch.Tensor, modality: str | None = None) -> torch.Tensor:
        return self.head(self.features(x, modality))


def has_reparameterizable_blocks(model: nn.Module) -> bool:
    """Whether ``model`` holds blocks with a separate deploy form."""
    return any(isinstance(m, Reparameterizable) for m in model.modules())


def deploy_form(model: nn.Module) -> nn.Module:
    """A folded copy of ``model`` (every re-parameterizable block in deploy form, eval
    mode); ``model`` itself is left as it is."""
    return reparameterize_model(copy.deepcopy(model))


@torch.no_grad()
def predict(model: Classifier, inputs: torch.Tensor, modality: str | None = None,
            batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Predicted classes of ``inputs`` (eval mode; the model's mode is restored)."""
    logits = extract_features(model, inputs, batch_size, device,
                              forward=lambda x: model(x, modality))
    return logits.argmax(1).numpy()


def classification_scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy and macro-F1 (mean F1 over the classes present in either array)."""
    from sklearn.metrics import f1_score  # here: importing scikit-learn costs every client ~1 s

    labels = np.asarray(labels)
    return {"accuracy": float((predicted == labels).mean()),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}


def supervised_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    modality: str | None = None, label_smoothing: float = 0.0,
                    mixup: float = 0.0, generator: torch.Generator | None = None,
                    rng: np.random.Generator | None = None) -> torch.Tensor:
    """Cross-entropy (with ``label_smoothing``) on a batch, optionally on mixed inputs.

    With ``mixup = α > 0``, ``λ ~ Beta(α, α)`` (from ``rng``) and a permutation of the
    batch (from ``generator``) mix the inputs, ``x̃ = λ·x + (1 − λ)·x[π]``, and the loss is
    ``λ·CE(f(x̃), y) + (1 − λ)·CE(f(x̃), y[π])`` (Zhang et al., 2018).
    """
    if mixup <= 0:
        return F.cross_entropy(model(x, modality), y, label_smoothing=label_smoothing)
    lam = float((rng or np.random.default_rng()).beta(mixup, mixup))
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    logits = model(lam * x + (1.0 - lam) * x[perm], modality)
    return (lam * F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            + (1.0 - lam) * F.cross_entropy(logits, y[perm], label_smoothing=label_smoothing))


def check_arg_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ConfigError(f"invalid recipe field 'task.args.{name}': must be {bound}, "
                          f"got {value!r}")


class SupervisedTask(Task):
    """Backbone + linear head, cross-entropy on augmented views, scored on the test split."""

    name = "supervised"

    def __init__(self, parts: RunParts, label_smoothing: float = 0.0, mixup: float = 0.0,
                 augment: bool = True, standardize: bool = False) -> None:
        check_arg_range("label_smoothing", label_smoothing, 0.0, 1.0)
        check_arg_range("mixup", mixup, 0.0)
        self.cfg, self.splits = parts.cfg, parts.splits
        self.label_smoothing, self.mixup = float(label_smoothing), float(mixup)
        self.num_classes = 1 + int(max(max(train.labels.max(), test.labels.max())
                                       for train, test in parts.splits.values()))
        backbone = parts.backbone()  # seeds torch: the head below is the same on every node
        self.model: Classifier = Classifier(backbone, self.num_classes,
                                            standardize).to(self.cfg.device)
        self.augment = ({m: a.to(self.cfg.device) for m, a in parts.augmentations().items()}
                        if augment else {})
        self.reparameterizable = has_reparameterizable_blocks(self.model)
        # precision and memory format of the training step, resolved and applied once
        self.acceleration = Acceleration.for_model(self.cfg.train, self.cfg.device, self.model)

    # -- training ---------------------------------------------------------------------

    def forget_client(self) -> None:
        for augment in self.augment.values():
            reset_mixup_memories(augment)  # never let one client's audio reach another's

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of ``train.optimizer`` over the trainable parameters."""
        return make_optimizer(self.model, self.cfg.train)

    def set_train_mode(self) -> None:
        self.model.train()

    def train(self, data: ClientData, context: TrainContext) -> TrainOutcome:
        started = time.perf_counter()
        for modality, x in data.inputs.items():
            if len(x) < 2:
                raise ValueError(f"need at least 2 {modality} examples to train, got {len(x)}")
        torch.manual_seed(context.seed)  # kornia draws augmentation parameters from it
        generator = torch.Generator().manual_seed(context.seed)
        rng = np.random.default_rng(context.seed)
        device, train_cfg = self.cfg.device, self.cfg.train
        labels = {m: torch.as_tensor(np.asarray(y), dtype=torch.long)
                  for m, y in data.labels.items()}
        acceleration = self.acceleration
        step = acceleration.stepper(self.make_optimizer())
        self.set_train_mode()
        epoch_losses: list[float] = []
        for _ in range(train_cfg.local_epochs):
            plan = batch_plan({m: len(x) for m, x in data.inputs.items()},
                               train_cfg.batch_size, generator)
            total = 0.0
            for modality, idx in plan:
                x, y = data.inputs[modality][idx].to(device), labels[modality][idx].to(device)
                if modality in self.augment:
                    with torch.no_grad():
                        x = self.augment[modality](x)
                with acceleration.autocast():
                    loss = supervised_loss(self.model, acceleration.to_input(x), y,
                                           modality=modality,
                                           label_smoothing=self.label_smoothing,
                                           mixup=self.mixup, generator=generator,
                                           rng=rng).float()
                value = loss.item()
                if not math.isfinite(value):
                    raise FloatingPointError(f"supervised loss became {value}")
                step(loss if context.regularizer is None else loss + context.regularizer())
                total += value
            epoch_losses.append(total / len(plan))
        return TrainOutcome(epoch_losses[-1], data.num_examples, time.perf_counter() - started,
                            {"first-epoch-loss": epoch_losses[0]})

    # -- scores -----------------------------------------------------------------------

    def _prefix(self, modality: str) -> str:
        return f"{modality}_" if len(self.splits) > 1 else ""

    def score(self, model: nn.Module, inputs: torch.Tensor, labels: np.ndarray,
              modality: str) -> dict[str, float]:
        predicted = predict(model, inputs, modality, self.cfg.eval.batch_size, self.cfg.device)
        return classification_scores(predicted, labels)

    def evaluate(self) -> dict[str, float]:
        """Test accuracy and macro-F1 (per modality when the run has two), and the
        accuracy of the folded deploy form when the backbone has one."""
        deployed = deploy_form(self.model) if self.reparameterizable else None
        scores: dict[str, float] = {}
        for modality, (_, test) in self.splits.items():
            prefix = self._prefix(modality)
            result = self.score(self.model, test.images, test.labels, modality)
            scores.update({prefix + k: v for k, v in result.items()})
            if deployed is not None:
                folded = self.score(deployed, test.images, test.labels, modality)
                scores[prefix + "deploy_accuracy"] = folded["accuracy"]
        return scores

    def write_artifacts(self, folder: Path) -> list[Path]:
        """``confusion.csv`` (rows: true class, columns: predicted) on the held-out split,
        per modality when the run has two (``confusion_<modality>.csv``)."""
        written = []
        for modality, (train, test) in self.splits.items():
            predicted = predict(self.model, test.images, modality, self.cfg.eval.batch_size,
                                self.cfg.device)
            classes = int(max(np.max(train.labels), np.max(test.labels))) + 1
            matrix = np.zeros((classes, classes), dtype=np.int64)
            np.add.at(matrix, (np.asarray(test.labels), predicted), 1)
            name = "confusion.csv" if len(self.splits) == 1 else f"confusion_{modality}.csv"
            path = folder / name
            header = ",".join(str(c) for c in range(classes))
            np.savetxt(path, matrix, fmt="%d", delimiter=",", header=header, comments="")
            written.append(path)
        return written

    def evaluate_local(self, data: ClientData) -> dict[str, float] | None:
        """Accuracy and macro-F1 on one client's own held-out data (keys as in evaluate)."""
        scores: dict[str, float] = {}
        for modality, x in data.inputs.items():
            if len(x) == 0:
                continue
            result = self.score(self.model, x, np.asarray(data.labels[modality]), modality)
            scores.update({self._prefix(modality) + k: v for k, v in result.items()})
        return scores or None

    def baselines(self) -> dict[str, dict[str, float]]:
        """A logistic regression and a kNN on the raw inputs, and the majority class."""
        raw = raw_input_scores(self.splits, self.cfg)
        probe: dict[str, float] = {}
        knn: dict[str, float] = {}
        majority: dict[str, float] = {}
        for modality, (train, test) in self.splits.items():
            prefix = self._prefix(modality)
            probe[prefix + "accuracy"] = raw[prefix + "probe_acc"]
            knn[prefix + "accuracy"] = raw[prefix + "knn_acc"]
            most = np.bincount(np.asarray(train.labels)).argmax()
            constant = np.full(len(test), most)
            majority.update({prefix + k: v for k, v in
                             classification_scores(constant, test.labels).items()})
        return {"raw input": probe, "raw input kNN": knn, "majority class": majority}


@register_task("supervised", "backbone + linear head, cross-entropy on the labels "
                             "(args: label_smoothing, mixup, augment)")
def supervised_task(parts: RunParts, label_smoothing: float = 0.0, mixup: float = 0.0,
                    augment: bool = True) -> SupervisedTask:
    return SupervisedTask(parts, label_smoothing=label_smoothing, mixup=mixup, augment=augment)
