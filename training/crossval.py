"""Out-of-sample predictions and embeddings from K-fold training of the edge CNN.

cleanlab needs predicted probabilities that no model saw the label of. Training the same small
CNN once per fold (folds grouped by video, so frames of one item never sit on both sides) gives,
for every frame, the probabilities *and* the penultimate embedding of the fold model that held it
out. Those feed multi-annotator consensus (CROWDLAB), label issues and Datalab's outlier and
near-duplicate search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from training.train import TrainConfig

__all__ = ["cross_val_predict"]


def cross_val_predict(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    classes: Sequence[str],
    groups: np.ndarray,
    config: TrainConfig | None = None,
    n_folds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-fold out-of-sample class probabilities and embeddings.

    Parameters
    ----------
    images
        uint8 (N, S, S, 3) RGB, S = ``config.image_size``.
    labels
        int (N,) class indices (e.g. the annotators' majority vote).
    classes
        K class names.
    groups
        (N,) group per image (video id): a group is never split across folds.
    config
        Training hyper-parameters for every fold (same seed in each fold).
    n_folds
        Folds; capped by the number of groups (at least 2 groups are needed).

    Returns
    -------
    probs : np.ndarray
        float32 (N, K), rows sum to 1, each row from the model that did not train on it.
    embeddings : np.ndarray
        float32 (N, D), penultimate features from the same held-out model.
    folds : np.ndarray
        int (N,), the fold that held each image out.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    from training.evaluate import embed, predict_proba
    from training.train import train_model

    config = config or TrainConfig()
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"cross-validation needs frames from at least 2 videos, got {n_groups}")
    k = min(n_folds, n_groups)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
    probs = np.zeros((len(labels), len(classes)), np.float32)
    embeddings: np.ndarray | None = None
    fold_of = np.full(len(labels), -1, np.int64)
    for fold, (train, test) in enumerate(splitter.split(images, labels, groups)):
        if progress:
            progress(f"fold {fold + 1}/{k}: train {len(train)}, predict {len(test)}")
        result = train_model(
            images[train], labels[train], classes=list(classes), config=replace(config)
        )
        probs[test] = predict_proba(result.model, images[test])
        emb = embed(result.model, images[test])
        if embeddings is None:
            embeddings = np.zeros((len(labels), emb.shape[1]), np.float32)
        embeddings[test] = emb
        fold_of[test] = fold
    assert embeddings is not None
    return probs, embeddings, fold_of
