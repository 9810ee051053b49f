"""Losses: ASL against the formula by hand, BCE and softmax equivalences, normalization, and MSURU's
randomized softmax (candidate sets, eq. (1) gradient, determinism)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tagmill.trainer.losses import (LOSSES, AsymmetricLoss, bce_loss, build_loss, candidate_size,
                                    randomized_softmax_loss, sample_candidates, scores_from_logits,
                                    softmax_cross_entropy)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_asl_matches_the_formula_by_hand():
    # p = sigmoid(logit); gamma_neg 4, gamma_pos 1, clip 0.05.
    p = [[0.5, 0.75, 0.04], [0.25, 0.8, 0.5]]
    y = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    logits = torch.tensor([[_logit(v) for v in row] for row in p], dtype=torch.float64)
    loss = AsymmetricLoss(gamma_neg=4, gamma_pos=1, clip=0.05)(logits, torch.tensor(y, dtype=torch.float64))
    terms = [
        0.5 * -math.log(0.5),            # positive p=0.5:  (1-p)^1 * -log p        = 0.346574
        0.70 ** 4 * -math.log(0.30),     # negative p=0.75: p_m=0.70, p_m^4 -log(1-p_m) = 0.289074
        0.0,                             # negative p=0.04 < clip: p_m = 0
        0.20 ** 4 * -math.log(0.80),     # negative p=0.25: p_m=0.20               = 0.000357
        0.2 * -math.log(0.8),            # positive p=0.8                           = 0.044629
        0.45 ** 4 * -math.log(0.55),     # negative p=0.5:  p_m=0.45               = 0.024515
    ]
    assert loss.item() == pytest.approx(sum(terms) / 6, rel=1e-12)
    assert loss.item() == pytest.approx(0.11752470900930162, rel=1e-12)


def test_asl_without_focusing_and_clip_is_bce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 9, generator=gen, dtype=torch.float64) * 5
    logits[0, :3] = torch.tensor([17.0, -17.0, 0.0], dtype=torch.float64)  # within the eps clamp: 18.4
    targets = torch.rand(16, 9, generator=gen, dtype=torch.float64)  # soft targets too
    targets[1] = (targets[1] > 0.5).double()
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    asl = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0)(a, targets)
    bce = bce_loss(b, targets)
    assert asl.item() == pytest.approx(bce.item(), rel=1e-14)
    asl.backward()
    bce.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)
    # Beyond it the eps clamp caps an element's loss at -log(eps), where BCE keeps growing.
    far = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=0, eps=1e-8)(torch.tensor([[40.0]]), torch.zeros(1, 1))
    assert far.item() == pytest.approx(-math.log(1e-8), rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_losses_do_not_grow_with_batch_size(name):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    targets = (torch.rand(4, 10, generator=gen) < 0.3).double()
    targets[:, 0] = 1.0  # every row labeled
    loss = build_loss(name, sampling_ratio=1.0)
    small = loss(logits, targets)
    big = loss(logits.repeat(16, 1), targets.repeat(16, 1))  # 64 rows, the same rows tiled
    assert big.item() == pytest.approx(small.item(), rel=1e-12)


@pytest.mark.parametrize("name", ["asl", "bce"])
def test_sigmoid_losses_do_not_grow_with_class_count(name):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 10, generator=gen, dtype=torch.float64) * 3
    targets = (torch.rand(4, 10, generator=gen) < 0.3).double()
    loss = build_loss(name)
    tiled = loss(logits.repeat(16, 100), targets.repeat(16, 100))  # 64 x 1000
    assert tiled.item() == pytest.approx(loss(logits, targets).item(), rel=1e-12)
    # Independent draws of the same distribution: equal up to sampling noise (a sum would be 1600x).
    def draw(n, c, seed):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(n, c, generator=g) * 3, (torch.rand(n, c, generator=g) < 0.3).float()
    small, large = loss(*draw(32, 10, 3)), loss(*draw(64, 1000, 4))
    assert small.item() / large.item() == pytest.approx(1.0, abs=0.15)


def test_clip_zeroes_easy_negatives_and_their_gradient():
    p_easy = [0.001, 0.01, 0.049]  # all below clip 0.05
    for gamma_neg in (4.0, 0.5):   # 0.5: the power has an infinite slope at 0, the gradient must stay 0
        logits = torch.tensor([[_logit(p) for p in p_easy]], dtype=torch.float64, requires_grad=True)
        loss = AsymmetricLoss(gamma_neg=gamma_neg, clip=0.05)(logits, torch.zeros(1, 3, dtype=torch.float64))
        assert loss.item() == 0.0
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros(1, 3, dtype=torch.float64))
    # ... while a harder negative does count.
    hard = AsymmetricLoss(clip=0.05)(torch.tensor([[_logit(0.3)]]), torch.zeros(1, 1))
    assert hard.item() == pytest.approx(0.25 ** 4 * -math.log(0.75), rel=1e-5)


def test_asl_gradients_stay_finite_when_saturated():
    logits = torch.tensor([[60.0, -60.0], [-60.0, 60.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    AsymmetricLoss(gamma_neg=0.5, gamma_pos=0.5)(logits, targets).backward()
    assert torch.isfinite(logits.grad).all()


def test_softmax_cross_entropy_by_hand_ignores_label_less_rows():
    # softmax([0, ln 2, 0]) = [1/4, 1/2, 1/4]; targets {0, 1}: -(ln 1/4 + ln 1/2) = ln 8.
    logits = torch.tensor([[0.0, math.log(2.0), 0.0], [5.0, 1.0, 2.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert softmax_cross_entropy(logits, targets).item() == pytest.approx(math.log(8.0), rel=1e-14)


def test_all_label_less_batch_gives_zero_with_a_graph():
    logits = torch.randn(3, 5, requires_grad=True)
    for loss in (softmax_cross_entropy(logits, torch.zeros(3, 5)),
                 randomized_softmax_loss(logits, torch.zeros(3, 5), 0.4)):
        assert loss.item() == 0.0
        assert loss.requires_grad
        logits.grad = None
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros(3, 5))


def test_randomized_softmax_with_ratio_one_is_full_softmax():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 11, generator=gen)
    targets = (torch.rand(6, 11, generator=gen) < 0.25).float()
    targets[2] = 0.0
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    full = softmax_cross_entropy(a, targets)
    sampled = randomized_softmax_loss(b, targets, 1.0)
    assert torch.equal(full, sampled)
    full.backward()
    sampled.backward()
    assert torch.equal(a.grad, b.grad)


def _example(seed: int = 11):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 20, generator=gen, dtype=torch.float64)
    targets = torch.zeros(8, 20, dtype=torch.float64)
    targets[0, [1]] = 1
    targets[1, [0, 5, 19]] = 1
    targets[2, list(range(0, 20, 2))] = 1  # 10 targets: more than ceil(0.3 * 20) = 6
    targets[4, [7, 8]] = 1
    targets[5, [3]] = 1
    targets[6, [12, 13, 14]] = 1
    targets[7, [0]] = 1                    # row 3 has no label
    return logits, targets


def test_candidate_sets_have_the_right_size_and_hold_the_targets():
    _, targets = _example()
    assert candidate_size(0.3, 20) == 6 and candidate_size(0.3, 10) == 3 and candidate_size(0.01, 20) == 1
    mask = sample_candidates(targets, 0.3, torch.Generator().manual_seed(0))
    sizes = mask.sum(dim=1).tolist()
    assert sizes == [6, 6, 10, 6, 6, 6, 6, 6]
    assert bool(mask[targets > 0].all())
    assert torch.equal(mask[2], targets[2] > 0)  # 10 targets: no room for negatives


def test_negatives_are_drawn_uniformly_without_replacement():
    targets = torch.zeros(4000, 10)
    targets[:, 0] = 1
    mask = sample_candidates(targets, 0.4, torch.Generator().manual_seed(3))  # 1 target + 3 of 9 negatives
    assert (mask.sum(dim=1) == 4).all()
    share = mask[:, 1:].float().mean(dim=0)
    torch.testing.assert_close(share, torch.full((9,), 3 / 9), atol=0.03, rtol=0)


def test_randomized_softmax_gradient_is_eq_1_inside_and_zero_outside():
    logits, targets = _example()
    mask = sample_candidates(targets, 0.3, torch.Generator().manual_seed(42))
    x = logits.clone().requires_grad_(True)
    loss = randomized_softmax_loss(x, targets, 0.3, generator=torch.Generator().manual_seed(42))
    loss.backward()
    labeled = (targets.sum(dim=1) > 0).sum().item()
    assert labeled == 7
    # By hand: S_j = e^{x_j} / sum_{k in C_i} e^{x_k}; loss_i = -sum_{j in T_i} log S_j; mean over 7 rows.
    exp = torch.where(mask, logits.exp(), torch.zeros_like(logits))
    s = exp / exp.sum(dim=1, keepdim=True)
    expected_loss = -(torch.where(targets > 0, s.log(), torch.zeros_like(s))).sum() / labeled
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-12)
    n_targets = targets.sum(dim=1, keepdim=True)
    eq1 = torch.where(mask, s * n_targets - targets, torch.zeros_like(s)) / labeled  # MSURU eq. (1)
    eq1[3] = 0.0  # a label-less row contributes nothing
    torch.testing.assert_close(x.grad, eq1, rtol=1e-12, atol=1e-15)
    assert torch.equal(x.grad[~mask], torch.zeros_like(x.grad[~mask]))


def test_randomized_softmax_is_deterministic_given_the_rng():
    logits, targets = _example()
    one = randomized_softmax_loss(logits, targets, 0.3, generator=torch.Generator().manual_seed(9))
    two = randomized_softmax_loss(logits, targets, 0.3, generator=torch.Generator().manual_seed(9))
    other = randomized_softmax_loss(logits, targets, 0.3, generator=torch.Generator().manual_seed(10))
    assert torch.equal(one, two)
    assert not torch.equal(one, other)
    # Without a generator the global RNG is used: restoring its state (as a checkpoint resume does) replays.
    state = torch.get_rng_state()
    first = build_loss("sampled_softmax", sampling_ratio=0.3)(logits, targets)
    torch.set_rng_state(state)
    again = build_loss("sampled_softmax", sampling_ratio=0.3)(logits, targets)
    assert torch.equal(first, again)


def test_build_loss_and_scores():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    targets = torch.tensor([[0.0, 1.0]])
    assert build_loss("bce")(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets).item())
    assert build_loss("softmax")(logits, targets).item() == pytest.approx(-math.log(0.75))
    assert isinstance(build_loss("asl", gamma_neg=2, clip=0.0), AsymmetricLoss)
    torch.testing.assert_close(scores_from_logits("asl", logits), torch.tensor([[0.5, 0.75]]))
    torch.testing.assert_close(scores_from_logits("sampled_softmax", logits), torch.tensor([[0.25, 0.75]]))
    with pytest.raises(ValueError, match="unknown loss 'focal'; allowed: asl, bce, softmax, sampled_softmax"):
        build_loss("focal")
    with pytest.raises(ValueError, match="allowed"):
        scores_from_logits("focal", logits)
    with pytest.raises(ValueError, match=r"sampling_ratio must be in \(0, 1\]"):
        build_loss("sampled_softmax", sampling_ratio=0.0)
    with pytest.raises(ValueError, match=r"same shape \(N, C\); got \(1, 2\) and \(1, 3\)"):
        bce_loss(logits, torch.zeros(1, 3))
