"""Evaluation protocols for frozen SSL features."""

from avfed.eval.features import extract_features
from avfed.eval.knn import knn_accuracy, knn_predict
from avfed.eval.linear_probe import linear_probe_accuracy

__all__ = ["extract_features", "knn_accuracy", "knn_predict", "linear_probe_accuracy"]
