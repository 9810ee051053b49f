"""Training losses for multi-label targets: ASL, BCE, softmax cross entropy and MSURU's randomized softmax.

Every loss takes logits (N, C) and targets (N, C) (0/1, or soft values in [0, 1]) and returns a scalar.

| name              | loss                                                     | scores at inference |
| ----------------- | -------------------------------------------------------- | ------------------- |
| "asl"             | Asymmetric Loss (Ridnik et al. 2020), used by 58.com     | sigmoid             |
| "bce"             | binary cross entropy with logits                         | sigmoid             |
| "softmax"         | MSURU 3.4 cross entropy over all classes                 | softmax             |
| "sampled_softmax" | MSURU 3.4 randomized softmax over T_i and sampled S_i    | softmax             |

Normalization: all four are means, so the loss magnitude (and thus a good learning rate) does not change
with the batch size or, for ASL and BCE, with the number of classes: ASL and BCE average over all
batch x class elements; the softmax losses sum over a row's targets (the paper's loss_i) and average over
the rows that have at least one target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tagmill.config import LOSSES  # the names accepted by `build_loss` and `scores_from_logits`

_SIGMOID_LOSSES = ("asl", "bce")


def _check_shapes(logits: Tensor, targets: Tensor) -> None:
    if logits.dim() != 2 or logits.shape != targets.shape:
        raise ValueError(f"expected logits and targets of the same shape (N, C); got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")


class AsymmetricLoss(nn.Module):
    """Asymmetric Loss (Ridnik et al. 2020, "Asymmetric Loss For Multi-Label Classification", eq. 6-7).

    With p = sigmoid(logit) and, for the negative part, the shifted probability p_m = max(p - clip, 0):

        loss = -y (1 - p)^gamma_pos log(p) - (1 - y) p_m^gamma_neg log(1 - p_m)

    (logs clamped at eps). gamma_neg > gamma_pos down-weights the many easy negatives; clip discards
    negatives with p < clip entirely (their loss and gradient are exactly 0). Gradients flow through the
    focusing weights too (the loss as written; the paper's code can optionally detach them).

    Normalized: the mean over all N x C elements, where the paper's code returns the sum. The sum grows
    with batch size and class count, so the learning rate would have to follow both; the mean does not.
    gamma_neg = gamma_pos = clip = 0 is BCE with logits (mean), exactly so while |logit| < -log(eps)
    (18.4 for eps 1e-8); beyond it the clamp caps an element's loss at -log(eps).
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        if gamma_neg < 0 or gamma_pos < 0:
            raise ValueError(f"gamma_neg and gamma_pos must be >= 0, got {gamma_neg} and {gamma_pos}")
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        _check_shapes(logits, targets)
        targets = targets.to(logits.dtype)
        log_eps = math.log(self.eps)
        p = torch.sigmoid(logits)
        # log(max(p, eps)) through logsigmoid: the same value, but exact where 1 - p rounds to 1.
        log_p = F.logsigmoid(logits).clamp(min=log_eps)
        if self.clip > 0:
            p_m = (p - self.clip).clamp(min=0)
            log_not_p_m = torch.log((1 - p_m).clamp(min=self.eps))
        else:
            p_m = p
            log_not_p_m = F.logsigmoid(-logits).clamp(min=log_eps)
        # The weights are clamped away from 0 before the power: d/dx w^gamma is infinite at w = 0 for
        # gamma < 1 and would turn the (zero) gradient of a saturated or clipped element into NaN. Where the
        # clamp changes a weight, the log it multiplies is 0 (p_m = 0) or below eps (p ~ 1).
        w_pos = (1 - p).clamp(min=self.eps) ** self.gamma_pos if self.gamma_pos > 0 else 1.0
        w_neg = p_m.clamp(min=self.eps) ** self.gamma_neg if self.gamma_neg > 0 else 1.0
        loss = -targets * w_pos * log_p - (1 - targets) * w_neg * log_not_p_m
        return loss.mean()


def bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross entropy with logits, mean over all N x C elements."""
    _check_shapes(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def _mean_over_labeled_rows(per_row: Tensor, targets: Tensor) -> Tensor:
    # Label-less rows carry no target to push up: they are left out of the mean, not counted as 0.
    # With none labeled the result is 0 and still attached to the graph (backward() works, grads are 0).
    labeled = (targets > 0).any(dim=1)
    return (per_row * labeled).sum() / labeled.sum().clamp(min=1)


def softmax_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """MSURU 3.4 loss with C_i = all classes: loss_i = -sum_{j in T_i} y_j log softmax(x_i)_j.

    Averaged over the rows with at least one target (rows without labels are ignored; a batch without
    any gives 0 with a gradient graph). Soft targets weight their class's term.
    """
    _check_shapes(logits, targets)
    targets = targets.to(logits.dtype)
    per_row = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _mean_over_labeled_rows(per_row, targets)


def candidate_size(sampling_ratio: float, num_classes: int) -> int:
    """ceil(sampling_ratio * num_classes), the size of C_i before it is widened to hold all of T_i.

    The product is rounded to 9 decimals first so that e.g. 0.3 * 10 = 3.0000000000000004 gives 3."""
    if not 0.0 < sampling_ratio <= 1.0:
        raise ValueError(f"sampling_ratio must be in (0, 1], got {sampling_ratio}")
    return max(1, min(num_classes, math.ceil(round(sampling_ratio * num_classes, 9))))


def sample_candidates(targets: Tensor, sampling_ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """The candidate sets of MSURU 3.4 as a bool mask (N, C): C_i = T_i ∪ S_i.

    |C_i| = max(candidate_size(sampling_ratio, C), |T_i|), T_i = {j: targets_ij > 0}, and S_i is drawn
    uniformly without replacement from the other classes. Vectorized: every class gets a uniform key,
    targets get key -1 so they rank first, and each row keeps its |C_i| lowest-ranked classes (the
    lowest m of i.i.d. uniforms are a uniform m-subset). Uses `generator`, else the global torch RNG, so
    restoring the RNG state from a checkpoint replays the same draws.
    """
    n, c = targets.shape
    positive = targets > 0
    size = torch.clamp(positive.sum(dim=1), min=candidate_size(sampling_ratio, c))
    keys = torch.rand((n, c), generator=generator, device=targets.device)
    keys = keys.masked_fill(positive, -1.0)
    order = torch.argsort(keys, dim=1, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(c, device=targets.device).expand(n, c))
    return ranks < size.unsqueeze(1)


def randomized_softmax_loss(logits: Tensor, targets: Tensor, sampling_ratio: float,
                            generator: torch.Generator | None = None) -> Tensor:
    """MSURU 3.4 randomized softmax: loss_i = -sum_{j in T_i} log( e^{x_j} / sum_{k in C_i} e^{x_k} ).

    C_i from `sample_candidates`. Logits outside C_i are masked to -inf, so their gradient is exactly 0;
    inside, d loss_i / d x_j = S_j |T_i| - y_j (MSURU eq. (1)). Averaged over rows with at least one
    target, like `softmax_cross_entropy`, which sampling_ratio = 1.0 reproduces exactly (no draw is made).
    """
    _check_shapes(logits, targets)
    if candidate_size(sampling_ratio, logits.shape[1]) >= logits.shape[1]:
        return softmax_cross_entropy(logits, targets)
    targets = targets.to(logits.dtype)
    candidates = sample_candidates(targets, sampling_ratio, generator)
    log_s = F.log_softmax(logits.masked_fill(~candidates, float("-inf")), dim=1)
    # where(), not a product: 0 * -inf outside C_i would be NaN. Targets are always inside C_i.
    per_row = -torch.where(candidates, targets * log_s, torch.zeros_like(log_s)).sum(dim=1)
    return _mean_over_labeled_rows(per_row, targets)


def build_loss(name: str, *, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
               sampling_ratio: float = 1.0,
               generator: torch.Generator | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss called `name` (one of LOSSES) as a function (logits, targets) -> scalar.

    gamma_neg, gamma_pos, clip: ASL only (defaults: the ASL paper's multi-label setting with gamma_pos 0).
    sampling_ratio, generator: "sampled_softmax" only (generator None: the global torch RNG).
    """
    if name == "asl":
        return AsymmetricLoss(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
    if name == "bce":
        return bce_loss
    if name == "softmax":
        return softmax_cross_entropy
    if name == "sampled_softmax":
        candidate_size(sampling_ratio, 1)  # validate now, not at the first batch

        def loss(logits: Tensor, targets: Tensor) -> Tensor:
            return randomized_softmax_loss(logits, targets, sampling_ratio, generator)

        return loss
    raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")


def scores_from_logits(name: str, logits: Tensor) -> Tensor:
    """Per-class scores for evaluation: sigmoid for "asl"/"bce", softmax over classes for the softmax
    losses (MSURU keeps all softmax inputs at inference, whatever the training sampling ratio)."""
    if name in _SIGMOID_LOSSES:
        return torch.sigmoid(logits)
    if name in LOSSES:
        return torch.softmax(logits, dim=1)
    raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
