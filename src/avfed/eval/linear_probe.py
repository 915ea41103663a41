"""Linear probe: logistic regression on frozen, standardised features.

Offline (after pretraining) rather than an online head, so the number measures the
representation alone; standardising makes one regularisation strength fit any
backbone's feature scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: np.ndarray,
    test_features: torch.Tensor,
    test_labels: np.ndarray,
    max_iter: int = 1000,
    c: float = 1.0,
) -> float:
    # imported here: every process importing avfed.eval (each simulated client among
    # them) would otherwise pay about a second for scikit-learn it never uses
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features.numpy())
    clf = LogisticRegression(max_iter=max_iter, C=c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(train_features.numpy()), np.asarray(train_labels))
    pred = clf.predict(scaler.transform(test_features.numpy()))
    return float((pred == np.asarray(test_labels)).mean())
