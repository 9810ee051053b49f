"""Metrics: hand-computed tiny cases with exact numbers, and agreement with scikit-learn on random data
with ties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score
from sklearn.metrics import hamming_loss as sk_hamming_loss
from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score

from tagmill.trainer.metrics import (default_boundary, evaluate, hamming_loss, head_tail_accuracy,
                                     knn_precision_coverage, mean_average_precision, parent_level_accuracy,
                                     ranking_average_precision, top_k_accuracy)

# Class 0: scores .9 (pos), .8 (neg) tied with .8 (pos), .1 (neg): P=1 at R=1/2, then P=2/3 at R=1 -> 5/6.
# Class 1: the one positive scores highest -> 1. Class 2: no positive, left out of the macro mean.
SCORES = np.array([[0.9, 0.2, 0.3], [0.8, 0.7, 0.1], [0.8, 0.1, 0.5], [0.1, 0.6, 0.2]])
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_map_by_hand():
    result = mean_average_precision(SCORES, TARGETS)
    assert result["macro"] == pytest.approx((5 / 6 + 1) / 2, abs=1e-15)
    # Flattened, descending: .9+ .8- .8+ .7+ .6- .5- .3- .2- .2- .1- .1- .1-  (P = 3)
    # thresholds: .9 -> P 1, R 1/3; .8 -> P 2/3, R 2/3; .7 -> P 3/4, R 1  =>  1/3 + 2/9 + 1/4 = 29/36
    assert result["micro"] == pytest.approx(29 / 36, abs=1e-15)
    assert mean_average_precision(SCORES, np.zeros_like(TARGETS)) == {"macro": None, "micro": None}


def _random_case(seed: int, n: int = 40, c: int = 7, ties: bool = True):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (n, c)) / 5.0 if ties else rng.random((n, c))
    targets = (rng.random((n, c)) < 0.3).astype(int)
    targets[:3] = 0  # some label-less rows
    return scores, targets


@pytest.mark.parametrize("seed", range(8))
def test_map_and_ranking_ap_agree_with_sklearn_on_ties(seed):
    scores, targets = _random_case(seed)
    result = mean_average_precision(scores, targets)
    per_class = [average_precision_score(targets[:, c], scores[:, c])
                 for c in range(targets.shape[1]) if targets[:, c].any()]
    assert result["macro"] == pytest.approx(np.mean(per_class), abs=1e-12)
    assert result["micro"] == pytest.approx(average_precision_score(targets.ravel(), scores.ravel()), abs=1e-12)
    labeled = targets.any(axis=1)
    assert ranking_average_precision(scores, targets) == pytest.approx(
        label_ranking_average_precision_score(targets[labeled], scores[labeled]), abs=1e-12)


def test_ranking_ap_by_hand_excludes_label_less_rows():
    scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8], [0.3, 0.2, 0.1], [0.5, 0.5, 0.1]])
    targets = np.array([[0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]])
    # row 0: label 1 ranked 2nd -> 1/2. row 1: label 2 ranked 1st -> 1, label 0 ranked 3rd with 2 true at or
    # above -> 2/3; mean 5/6. row 2: no label, excluded. row 3: label 1 tied with class 0 -> rank 2 -> 1/2.
    assert ranking_average_precision(scores, targets) == pytest.approx((1 / 2 + 5 / 6 + 1 / 2) / 3, abs=1e-15)
    # sklearn counts the label-less row as a perfect 1.0, which inflates the mean.
    assert label_ranking_average_precision_score(targets, scores) == pytest.approx((1 / 2 + 5 / 6 + 1 + 1 / 2) / 4)
    assert ranking_average_precision(scores[2:3], targets[2:3]) is None


def test_hamming_loss_by_hand_and_against_sklearn():
    # Decisions at 0.5: [[1,0,0],[1,1,0],[1,0,1],[0,1,0]] vs truth: wrong at (1,0), (2,2), (3,1) -> 3/12.
    assert hamming_loss(SCORES, TARGETS) == 0.25
    assert hamming_loss(np.array([[0.5, 0.49]]), np.array([[1, 0]])) == 0.0  # a score at the threshold is a yes
    scores, targets = _random_case(3)
    assert hamming_loss(scores, targets, threshold=0.4) == pytest.approx(
        sk_hamming_loss(targets, (scores >= 0.4).astype(int)), abs=1e-15)


def test_top_k_by_hand():
    scores = np.array([[0.1, 0.5, 0.3, 0.2], [0.5, 0.5, 0.1, 0.0], [0.4, 0.3, 0.2, 0.1], [0.9, 0.1, 0.1, 0.1]])
    targets = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    # row 0: hit at 1. row 1: tie, the lower id (0) comes first -> hit at 2. row 2: best true label 3rd.
    # row 3: no label, excluded.
    assert top_k_accuracy(scores, targets, ks=(1, 2, 3, 5)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0, 5: 1.0}
    assert top_k_accuracy(scores[3:], targets[3:], ks=(1, 3)) == {1: None, 3: None}


@pytest.mark.parametrize("seed", range(4))
def test_top_k_agrees_with_sklearn_single_label(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((60, 8))
    labels = rng.integers(0, 8, 60)
    targets = np.eye(8, dtype=int)[labels]
    result = top_k_accuracy(scores, targets, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert result[k] == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=range(8)), abs=1e-15)


def test_top_k_multi_label_against_a_loop():
    scores, targets = _random_case(5, ties=False)
    result = top_k_accuracy(scores, targets, ks=(1, 3))
    for k in (1, 3):
        hits = [bool(set(np.argsort(-s)[:k]) & set(np.flatnonzero(t))) for s, t in zip(scores, targets) if t.any()]
        assert result[k] == pytest.approx(np.mean(hits), abs=1e-15)


# Six points in the plane (angles in degrees): 0 at 0, 1 at 6.3, 2 at 20.6, 3 at 90, 4 at 83.7, and a
# label-less point 5 at -2.9 that is a candidate neighbour but never a query.
POINTS = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0], [0.1, 0.9], [1.0, -0.05]])
POINT_LABELS = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])  # A, A, B, B, BC, -


def test_knn_precision_and_coverage_by_hand():
    # k = 2 neighbours: q0 -> 5 (no), 1 (A: yes) = 1/2; q1 -> 0 (yes), 5 (no) = 1/2; q2 -> 1, 0 (no, no) = 0;
    # q3 -> 4, 2 (B, B) = 1; q4 -> 3, 2 (B, B) = 1.   P@2 = 3/5, C@2 = 4/5.
    result = knn_precision_coverage(POINTS * [[3.0], [1.0], [0.5], [2.0], [1.0], [7.0]], POINT_LABELS, k=2)
    assert result == {"precision": pytest.approx(0.6, abs=1e-12), "coverage": pytest.approx(0.8, abs=1e-12),
                      "k": 2, "queries": 5}


def test_knn_drops_the_query_itself_even_with_an_exact_duplicate():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # Each point's only true neighbour carries another label: counting the query itself would give hits.
    assert knn_precision_coverage(embeddings, labels, k=1)["precision"] == 0.0


def test_knn_with_fewer_rows_than_k():
    result = knn_precision_coverage(POINTS[:3], POINT_LABELS[:3], k=10)
    # k drops to 2: q0 -> 1 (yes), 2 (no); q1 -> 0 (yes), 2 (no); q2 -> 1, 0 (no, no).
    assert result == {"precision": pytest.approx(1 / 3), "coverage": pytest.approx(2 / 3), "k": 2, "queries": 3}
    assert knn_precision_coverage(POINTS[:1], POINT_LABELS[:1], k=10) == {
        "precision": None, "coverage": None, "k": 0, "queries": 1}


def test_knn_agrees_with_brute_force():
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(80, 16))
    labels = (rng.random((80, 5)) < 0.25).astype(int)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    precision, coverage = [], []
    for q in np.flatnonzero(labels.any(axis=1)):
        neighbours = np.argsort(-similarity[q])[:10]
        shares = (labels[neighbours] & labels[q]).any(axis=1)
        precision.append(shares.mean())
        coverage.append(shares.any())
    result = knn_precision_coverage(embeddings, labels, k=10)
    assert result["precision"] == pytest.approx(np.mean(precision), abs=1e-12)
    assert result["coverage"] == pytest.approx(np.mean(coverage), abs=1e-12)


def test_head_tail_by_hand():
    support = np.array([50, 10, 3, 0])  # boundary 10: head {0, 1} (10 is head), tail {2, 3}
    scores = np.array([[0.9, 0.1, 0.2, 0.3],   # true {0}: head, hit at 1
                       [0.5, 0.9, 0.4, 0.1],   # true {0, 2}: rarest is 2 -> tail; 0 is 2nd -> hit at 3
                       [0.1, 0.5, 0.9, 0.0],   # true {1}: head; 2nd -> hit at 3 only
                       [0.4, 0.3, 0.2, 0.1],   # true {3}: tail, ranked last -> miss at 3
                       [0.9, 0.1, 0.1, 0.1]])  # no label, excluded
    targets = np.array([[1, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    assert head_tail_accuracy(scores, targets, support, boundary=10) == {
        "boundary": 10,
        "head": {"rows": 2, "classes": 2, "top_k": {1: 0.5, 3: 1.0}},
        "tail": {"rows": 2, "classes": 2, "top_k": {1: 0.0, 3: 0.5}},
    }
    empty_tail = head_tail_accuracy(scores, targets, support, boundary=0)
    assert empty_tail["tail"] == {"rows": 0, "classes": 0, "top_k": {1: None, 3: None}}
    assert empty_tail["head"]["rows"] == 4
    with pytest.raises(ValueError, match="one count per class"):
        head_tail_accuracy(scores, targets, support[:3], boundary=10)
    assert default_boundary(support) == 10  # median of 50, 10, 3 (classes with training images)


PATHS = [["elec", "computer"],  # 0 keyboard
         ["elec", "computer"],  # 1 mouse
         ["elec", "phone"],     # 2 iphone
         ["home", "living"],    # 3 sofa
         ["home"],              # 4 lamp: shallower, stays "home" at level 2
         [],                    # 5 misc: no ancestors, stays itself
         ["garden", "living"]]  # 6 bench: "living" again, but under another parent


def test_parent_level_accuracy_by_hand():
    rows = [({0}, 1), ({0}, 2), ({2}, 2), ({3}, 6), ({4}, 3), ({5}, 5), ({2, 3}, 4), (set(), 0)]
    targets = np.zeros((len(rows), 7), dtype=int)
    scores = np.full((len(rows), 7), 0.1)
    for i, (true, predicted) in enumerate(rows):
        targets[i, sorted(true)] = 1
        scores[i, predicted] = 0.9
    result = parent_level_accuracy(scores, targets, PATHS)
    # Level 1 (elec, home, garden, misc): correct = 1 1 1 0 1 1 1 (row 6: home is among {elec, home}).
    # Macro by first true label: elec rows 0,1,2,6 -> 1; home rows 3,4 -> 1/2; misc row 5 -> 1 => 5/6.
    # Level 2 (elec/computer, elec/phone, home/living, home, misc, garden/living): correct = 1 0 1 0 0 1 0.
    # Macro: computer 1/2, phone (rows 2, 6) 1/2, home/living 0, home 0, misc 1 => 2/5.
    assert result == {1: {"micro": pytest.approx(6 / 7), "macro": pytest.approx(5 / 6), "classes": 4},
                      2: {"micro": pytest.approx(3 / 7), "macro": pytest.approx(2 / 5), "classes": 6}}
    assert parent_level_accuracy(scores, targets, [[] for _ in range(7)]) == {}
    assert parent_level_accuracy(scores[7:], targets[7:], PATHS)[1] == {"micro": None, "macro": None, "classes": 4}


def test_evaluate_collects_everything_as_json():
    scores, targets = _random_case(11, n=30, c=7)
    embeddings = np.random.default_rng(11).normal(size=(30, 8))
    support = np.array([40, 30, 20, 10, 5, 2, 1])
    result = evaluate(scores, targets, embeddings, train_support=support, class_paths=PATHS, k=5, boundary=10)
    assert json.loads(json.dumps(result)) == result
    assert result["rows"] == 30 and result["classes"] == 7
    assert result["labeled_rows"] == int(targets.any(axis=1).sum())
    assert result["map_macro"] == mean_average_precision(scores, targets)["macro"]
    assert result["map_micro"] == mean_average_precision(scores, targets)["micro"]
    assert result["hamming_loss"] == hamming_loss(scores, targets)
    assert result["ranking_ap"] == ranking_average_precision(scores, targets)
    assert result["top_k"] == {str(k): v for k, v in top_k_accuracy(scores, targets).items()}
    assert result["knn"] == knn_precision_coverage(embeddings, targets, k=5)
    ht = head_tail_accuracy(scores, targets, support, 10)
    assert result["head_tail"]["head"]["top_k"] == {str(k): v for k, v in ht["head"]["top_k"].items()}
    assert result["head_tail"]["tail"]["rows"] == ht["tail"]["rows"]
    assert result["parent_levels"] == {str(k): v for k, v in parent_level_accuracy(scores, targets, PATHS).items()}
    without = evaluate(scores, targets, None, train_support=support, class_paths=PATHS)
    assert without["knn"]["precision"] is None
    assert without["head_tail"]["boundary"] == 10  # median of the supports
