"""Evaluation metrics: numpy arrays in, plain floats and dicts out.

scores: float array (N, C), higher = more likely (sigmoid or softmax outputs, or logits).
targets: 0/1 array (N, C) (anything > 0 counts as a label). Rows without labels are kept where a
metric defines them (mAP, Hamming loss) and excluded where they would count as free hits or misses.
A metric that is undefined on the data (no positives, no labeled rows) is None, never NaN.

| metric                                 | source                               |
| -------------------------------------- | ------------------------------------ |
| mAP macro/micro, Hamming loss          | 58.com                               |
| top-1/3/5 accuracy, parent-level acc.  | OLX                                  |
| rankingAP, P@k and C@k of kNN          | MSURU 5.1                            |
| top-1/3 accuracy on head / tail rows   | SICoT 4.2 and table 4                |

`evaluate` returns all of them as one JSON-able dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_arrays(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"expected scores and targets of the same shape (N, C); got {scores.shape} and "
                         f"{targets.shape}")
    return scores, targets


def _column_average_precision(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AP of each column (as sklearn's average_precision_score): sum over thresholds of
    (R_n - R_{n-1}) P_n, one threshold per distinct score, no interpolation. NaN for a column without
    positives. Equivalently AP = (1/P) sum over positives of the precision at the end of the positive's
    tie group, which is what is computed here, for all columns at once."""
    n = scores.shape[0]
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    pos = np.take_along_axis(positive, order, axis=0)
    tp = np.cumsum(pos, axis=0)
    # Index of the last row of each row's tie group (the threshold at which it is counted).
    last = np.ones_like(pos)
    last[:-1] = s[:-1] != s[1:]
    index = np.broadcast_to(np.arange(n)[:, None], s.shape)
    group_end = np.where(last, index, n)[::-1]
    group_end = np.minimum.accumulate(group_end, axis=0)[::-1]
    precision_at_end = np.take_along_axis(tp, group_end, axis=0) / (group_end + 1)
    total = pos.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (precision_at_end * pos).sum(axis=0) / total, np.nan)


def mean_average_precision(scores, targets) -> dict[str, float | None]:
    """{"macro": mean AP over classes with at least one positive, "micro": AP of the flattened arrays}.

    AP as sklearn's average_precision_score (step-wise, ties form one threshold). None when there is no
    positive at all."""
    scores, targets = _as_arrays(scores, targets)
    if scores.size == 0 or not targets.any():
        return {"macro": None, "micro": None}
    per_class = _column_average_precision(scores, targets)
    micro = _column_average_precision(scores.reshape(-1, 1), targets.reshape(-1, 1))[0]
    return {"macro": float(np.nanmean(per_class)), "micro": float(micro)}


def hamming_loss(scores, targets, threshold: float = 0.5) -> float | None:
    """Share of wrong label decisions (58.com): mean over N x C of [score >= threshold] != target.
    None for empty input."""
    scores, targets = _as_arrays(scores, targets)
    if scores.size == 0:
        return None
    return float(np.mean((scores >= threshold) != targets))


def _top_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the k top-scored classes per row, best first; ties go to the lower class id."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_accuracy(scores, targets, ks: Sequence[int] = (1, 3, 5)) -> dict[int, float | None]:
    """{k: share of labeled rows whose k top-scored classes include a true label} (OLX top-1/3/5).

    Rows without labels are excluded (None when none is left). Ties rank the lower class id first;
    k larger than C counts every class."""
    scores, targets = _as_arrays(scores, targets)
    labeled = targets.any(axis=1)
    scores, targets = scores[labeled], targets[labeled]
    if len(scores) == 0:
        return {int(k): None for k in ks}
    top = _top_classes(scores, max(ks))
    hit = np.take_along_axis(targets, top, axis=1)
    first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1), top.shape[1])
    return {int(k): float(np.mean(first_hit < k)) for k in ks}


def ranking_average_precision(scores, targets) -> float | None:
    """Label ranking AP (MSURU's rankingAP), as sklearn's label_ranking_average_precision_score on the
    rows that have labels:

        LRAP_i = mean over true labels j of |{true k: s_k >= s_j}| / |{k: s_k >= s_j}|

    averaged over rows with at least one label. sklearn instead scores a label-less row 1.0, which
    inflates the mean by the share of such rows; here they are excluded (None when no row has a label).
    Ties count as ranked above, as in sklearn."""
    scores, targets = _as_arrays(scores, targets)
    labeled = targets.any(axis=1)
    scores, targets = scores[labeled], targets[labeled]
    if len(scores) == 0:
        return None
    n, c = scores.shape
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    true = np.take_along_axis(targets, order, axis=1)
    # Ascending order: the first index of each element's tie group = number of scores strictly below it.
    starts = np.ones_like(true)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    index = np.broadcast_to(np.arange(c), s.shape)
    below = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    true_below = np.take_along_axis(np.cumsum(true, axis=1) - true, below, axis=1)
    rank = c - below                                    # |{k: s_k >= s_j}|
    true_rank = true.sum(axis=1, keepdims=True) - true_below  # |{true k: s_k >= s_j}|
    per_row = (true * true_rank / rank).sum(axis=1) / true.sum(axis=1)
    return float(per_row.mean())


def knn_precision_coverage(embeddings, targets, k: int = 10) -> dict[str, float | int | None]:
    """P@k and C@k of k-nearest-neighbour retrieval by cosine similarity (MSURU 5.1).

    Each row with at least one label is a query; its neighbours are the k most similar OTHER rows (all
    rows are candidates, label-less ones included: they share no class). P@k = mean share of neighbours
    sharing at least one class with the query; C@k = mean of "at least one neighbour shares a class"
    (called recall in Zhai et al.). With fewer than k + 1 rows, k drops to rows - 1; the k used is
    returned. faiss IndexFlatIP on L2-normalized float32 vectors (exact search).
    Returns {"precision", "coverage", "k", "queries"}; precision and coverage are None without queries.
    """
    import faiss  # imported here: only this metric needs it

    embeddings = np.asarray(embeddings, dtype=np.float32)
    targets = np.asarray(targets) > 0
    if embeddings.ndim != 2 or targets.ndim != 2 or len(embeddings) != len(targets):
        raise ValueError(f"expected embeddings (N, D) and targets (N, C) with the same N; got {embeddings.shape} "
                         f"and {targets.shape}")
    n = len(embeddings)
    k_used = min(k, n - 1)
    queries = np.flatnonzero(targets.any(axis=1))
    if k_used < 1 or len(queries) == 0:
        return {"precision": None, "coverage": None, "k": max(k_used, 0), "queries": int(len(queries))}
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = np.ascontiguousarray(embeddings / np.maximum(norms, 1e-12))
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, found = index.search(unit[queries], k_used + 1)
    # Drop the query itself. It is usually first, but an exact duplicate can take its place, so drop it by
    # id, and drop the last hit where it is not among the k + 1.
    is_self = found == queries[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    neighbours = found[~is_self].reshape(len(queries), k_used)
    shares = np.zeros(neighbours.shape, dtype=bool)
    for start in range(0, len(queries), 1024):  # bounded memory: 1024 x k x C booleans at a time
        q = queries[start:start + 1024]
        shares[start:start + 1024] = (targets[neighbours[start:start + 1024]] & targets[q][:, None, :]).any(axis=2)
    return {"precision": float(shares.mean()), "coverage": float(shares.any(axis=1).mean()),
            "k": int(k_used), "queries": int(len(queries))}


def head_tail_accuracy(scores, targets, train_support, boundary: int,
                       ks: Sequence[int] = (1, 3)) -> dict:
    """Top-k accuracy on head and tail rows (SICoT table 4).

    train_support: (C,) training images per class. Head classes have at least `boundary` training
    images, tail classes fewer. A labeled row belongs to the tail group when its rarest true label (lowest
    train support) is a tail class, else to the head group. Returns
    {"boundary": b, "head": group, "tail": group} with group = {"rows": n, "classes": classes of that
    kind in the class index, "top_k": {k: accuracy}}; a group without rows has None accuracies.
    """
    scores, targets = _as_arrays(scores, targets)
    support = np.asarray(train_support)
    if support.shape != (scores.shape[1],):
        raise ValueError(f"train_support must have one count per class ({scores.shape[1]}), got shape {support.shape}")
    labeled = targets.any(axis=1)
    rarest = np.where(targets, support[None, :], np.iinfo(np.int64).max).min(axis=1)
    tail_row = labeled & (rarest < boundary)
    head_row = labeled & ~tail_row
    result: dict = {"boundary": int(boundary)}
    for group, rows, classes in (("head", head_row, support >= boundary), ("tail", tail_row, support < boundary)):
        result[group] = {"rows": int(rows.sum()), "classes": int(classes.sum()),
                         "top_k": top_k_accuracy(scores[rows], targets[rows], ks)}
    return result


def _collapse(class_paths: Sequence[Sequence[str]], level: int) -> np.ndarray:
    """Node id of each class after collapsing to `level` (1 = top). A node is a path prefix, so two
    parents that share a name under different grandparents stay apart. A class with a shallower path
    maps to its deepest ancestor, one without ancestors to itself."""
    nodes: dict[tuple, int] = {}
    out = np.empty(len(class_paths), dtype=np.int64)
    for c, path in enumerate(class_paths):
        key = ("path", *path[:level]) if path else ("class", c)
        out[c] = nodes.setdefault(key, len(nodes))
    return out


def parent_level_accuracy(scores, targets, class_paths: Sequence[Sequence[str]]) -> dict[int, dict]:
    """Top-1 accuracy after collapsing classes to each parent level (OLX).

    class_paths[c]: ancestor names of class c from the top down (the class itself not included). For each
    level L = 1 .. max depth, classes and predictions map to their level-L ancestor (see `_collapse`). A
    labeled row is correct when its collapsed top-1 class is among its collapsed true labels.
    micro = share of correct rows; macro = mean over collapsed classes of their rows' accuracy, where a row's
    class is the collapsed label of its first true label in class-id order (a multi-label row counts once).
    Returns {L: {"micro", "macro", "classes": number of collapsed classes at L}}; micro and macro are None
    without labeled rows; {} when no class has ancestors (no hierarchy).
    """
    scores, targets = _as_arrays(scores, targets)
    if len(class_paths) != scores.shape[1]:
        raise ValueError(f"class_paths must have one path per class ({scores.shape[1]}), got {len(class_paths)}")
    depth = max((len(p) for p in class_paths), default=0)
    labeled = targets.any(axis=1)
    scores, targets = scores[labeled], targets[labeled]
    top1 = _top_classes(scores, 1)[:, 0]
    first_true = targets.argmax(axis=1)
    result = {}
    for level in range(1, depth + 1):
        node = _collapse(class_paths, level)
        groups = int(node.max()) + 1
        if len(scores) == 0:
            result[level] = {"micro": None, "macro": None, "classes": groups}
            continue
        collapsed_true = np.zeros((len(scores), groups), dtype=bool)
        rows, cols = np.nonzero(targets)
        collapsed_true[rows, node[cols]] = True
        correct = collapsed_true[np.arange(len(scores)), node[top1]]
        row_class = node[first_true]
        per_class = [correct[row_class == g].mean() for g in np.unique(row_class)]
        result[level] = {"micro": float(correct.mean()), "macro": float(np.mean(per_class)), "classes": groups}
    return result


def default_boundary(train_support) -> int:
    """Head/tail boundary used when none is given: the median training support of classes that have
    training images (rounded up), so head and tail each hold about half the classes."""
    support = np.asarray(train_support)
    present = support[support > 0]
    return int(np.ceil(np.median(present))) if len(present) else 1


def evaluate(scores, targets, embeddings=None, *, train_support, class_paths: Sequence[Sequence[str]],
             threshold: float = 0.5, k: int = 10, boundary: int | None = None,
             ks: Sequence[int] = (1, 3, 5)) -> dict:
    """Every metric of this module in one JSON-able dict (plain floats and ints, None where undefined).

    embeddings: (N, D) for P@k/C@k, or None to skip them. train_support: (C,) training images per class.
    class_paths: one ancestor-name list per class (classes.json "path"). boundary: head/tail boundary,
    None = `default_boundary(train_support)`. Keys are strings so the dict survives a JSON round trip:
    {"rows", "labeled_rows", "classes", "map_macro", "map_micro", "hamming_loss", "threshold",
     "top_k": {"1": .., "3": .., "5": ..}, "ranking_ap", "knn": {"precision", "coverage", "k", "queries"},
     "head_tail": {"boundary", "head": {"rows", "classes", "top_k": {"1": .., "3": ..}}, "tail": {...}},
     "parent_levels": {"1": {"micro", "macro", "classes"}, ...}}
    """
    scores, targets = _as_arrays(scores, targets)
    if boundary is None:
        boundary = default_boundary(train_support)
    mean_ap = mean_average_precision(scores, targets)
    head_tail = head_tail_accuracy(scores, targets, train_support, boundary, ks=(1, 3))  # SICoT reports top-1/3
    for group in ("head", "tail"):
        head_tail[group]["top_k"] = {str(key): value for key, value in head_tail[group]["top_k"].items()}
    if embeddings is None:
        knn = {"precision": None, "coverage": None, "k": None, "queries": None}
    else:
        knn = knn_precision_coverage(embeddings, targets, k)
    return {
        "rows": int(scores.shape[0]),
        "labeled_rows": int(targets.any(axis=1).sum()),
        "classes": int(scores.shape[1]),
        "map_macro": mean_ap["macro"],
        "map_micro": mean_ap["micro"],
        "hamming_loss": hamming_loss(scores, targets, threshold),
        "threshold": float(threshold),
        "top_k": {str(key): value for key, value in top_k_accuracy(scores, targets, ks).items()},
        "ranking_ap": ranking_average_precision(scores, targets),
        "knn": knn,
        "head_tail": head_tail,
        "parent_levels": {str(level): value for level, value in
                          parent_level_accuracy(scores, targets, class_paths).items()},
    }
