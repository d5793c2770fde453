"""A real/bogus classifier: L2-regularised logistic regression over DIA-source features.

Trained on labelled DIA sources (from processed visits with simulator truth, plus synthetic
sources injected into science images), so its probability is a calibrated ``reliability`` in the
APDB's sense. Numpy only (iteratively reweighted least squares, a handful of iterations on a
few thousand rows), saved as JSON — the weights, the feature means and scales, and a version — so
the model is provenance that lives in the repo beside the templates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from pachon.pipelines.prompt.dia import RB_FEATURES

__all__ = ["RealBogusModel", "feature_matrix", "train_real_bogus"]


def feature_matrix(table: Table, features: tuple[str, ...] = RB_FEATURES) -> np.ndarray:
    """The (n, k) feature matrix; missing values become 0 (the standardised mean)."""
    cols = [
        np.nan_to_num(np.asarray(table[f], dtype=float), nan=0.0, posinf=10.0, neginf=-10.0) for f in features
    ]
    return np.column_stack(cols) if cols and len(table) else np.zeros((len(table), len(features)))


@dataclass
class RealBogusModel:
    """Logistic model: p(real) = σ(w · (f − μ)/s + b)."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    features: tuple[str, ...] = RB_FEATURES
    version: str = "logreg-1"
    n_train: int = 0
    train_accuracy: float = float("nan")

    def predict(self, table: Table) -> np.ndarray:
        """Reliability in [0, 1] for every row."""
        if len(table) == 0:
            return np.zeros(0)
        z = (feature_matrix(table, self.features) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias)))

    def to_dict(self) -> dict[str, object]:
        return {
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "features": list(self.features),
            "version": self.version,
            "n_train": self.n_train,
            "train_accuracy": self.train_accuracy,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> RealBogusModel:
        return cls(
            weights=np.asarray(d["weights"], dtype=float),
            bias=float(d["bias"]),  # type: ignore[arg-type]
            mean=np.asarray(d["mean"], dtype=float),
            scale=np.asarray(d["scale"], dtype=float),
            features=tuple(d["features"]),  # type: ignore[arg-type]
            version=str(d["version"]),
            n_train=int(d.get("n_train", 0)),  # type: ignore[call-overload]
            train_accuracy=float(d.get("train_accuracy", float("nan"))),  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def train_real_bogus(
    table: Table, labels: np.ndarray, *, l2: float = 1.0, iterations: int = 25
) -> RealBogusModel:
    """Fit the model by IRLS on ``table``'s features and boolean ``labels`` (True = real)."""
    y = np.asarray(labels, dtype=float)
    if y.min() == y.max():
        raise ValueError("real/bogus training needs both real and bogus examples")
    x = feature_matrix(table)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.column_stack([(x - mean) / scale, np.ones(len(x))])
    # balance classes so the rarer (usually real) examples count as much as the bogus ones
    w_class = np.where(y > 0.5, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    beta = np.zeros(z.shape[1])
    reg = l2 * np.eye(z.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        w = w_class * p * (1 - p) + 1e-9
        grad = z.T @ (w_class * (y - p)) - reg @ beta
        hess = z.T @ (z * w[:, None]) + reg
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-6:
            break
    p = 1.0 / (1.0 + np.exp(-(z @ beta)))
    acc = float(((p > 0.5) == (y > 0.5)).mean())
    return RealBogusModel(
        weights=beta[:-1], bias=float(beta[-1]), mean=mean, scale=scale, n_train=len(y), train_accuracy=acc
    )
