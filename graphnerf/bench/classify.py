"""Classification probes on frozen embeddings: gmnerf's MLP, a linear probe and 1-NN.

All three are fitted on the train split's embeddings (``x_train [N, D]``, class indices
``y_train [N]``) and predict classes for ``x_test [M, D]``. Features are standardised with the
train split's mean and standard deviation (MLP and linear probe); 1-NN uses cosine similarity on
the raw embeddings.

* ``mlp``: gmnerf's classifier, hidden widths 1024-512-256 (ReLU, dropout), cross-entropy,
  AdamW, a fixed number of epochs (no early stopping: there is no validation set to pick on);
* ``linear``: multinomial logistic regression (scikit-learn, L2);
* ``knn1``: the class of the most similar train embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .metrics import cosine_similarity_matrix

__all__ = ["PROBES", "fit_predict", "knn1_predict", "linear_predict", "mlp_predict"]

PROBES: tuple[str, ...] = ("mlp", "linear", "knn1")


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x_train.mean(axis=0, keepdims=True)
    sd = x_train.std(axis=0, keepdims=True) + 1e-6
    return (x_train - mu) / sd, (x_test - mu) / sd


def mlp_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    hidden: Sequence[int] = (1024, 512, 256),
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    dropout: float = 0.2,
    batch_size: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """gmnerf's MLP classifier: train on ``(x_train, y_train)``, predict ``[M]`` for ``x_test``."""
    xtr, xte = _standardise(x_train, x_test)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dims = [xtr.shape[1], *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    net = nn.Sequential(*layers, nn.Linear(dims[-1], n_classes))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    xt = torch.as_tensor(xtr, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    n = xt.size(0)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(xte, dtype=torch.float32)).argmax(dim=1).numpy()


def linear_predict(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Linear probe: L2 multinomial logistic regression on standardised embeddings."""
    from sklearn.linear_model import LogisticRegression

    xtr, xte = _standardise(x_train, x_test)
    if len(np.unique(y_train)) < 2:  # one class in train: the probe can only predict it
        return np.full(len(x_test), int(y_train[0]) if len(y_train) else 0)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return clf.fit(xtr, y_train).predict(xte)


def knn1_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """1-NN: the class of the most cosine-similar train embedding."""
    sim = cosine_similarity_matrix(x_test, x_train)
    return np.asarray(y_train)[sim.argmax(dim=1).numpy()]


def fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    cfg: Mapping[str, Any],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Predictions ``{probe: [M]}`` of the three probes (``cfg``: the ``classification`` node)."""
    m = cfg.get("mlp", {})
    return {
        "mlp": mlp_predict(
            x_train,
            y_train,
            x_test,
            n_classes,
            hidden=tuple(m.get("hidden", (1024, 512, 256))),
            epochs=int(m.get("epochs", 100)),
            lr=float(m.get("lr", 1e-3)),
            weight_decay=float(m.get("weight_decay", 1e-4)),
            dropout=float(m.get("dropout", 0.2)),
            batch_size=int(m.get("batch_size", 64)),
            seed=seed,
        ),
        "linear": linear_predict(
            x_train, y_train, x_test, c=float(cfg.get("linear", {}).get("c", 1.0)), seed=seed
        ),
        "knn1": knn1_predict(x_train, y_train, x_test),
    }
