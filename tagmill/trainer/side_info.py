"""SICoT co-training: a semantic stream over titles that trains the shared classifier next to the images.

Side information based co-training (SICoT, Zhou, Pan et al.): the title's word embeddings (initialized from
word2vec/gensim vectors) pass through a bilinear word attention (Sec. 3.2) into one semantic embedding of the
visual feature's dimension; the mixed feature is the element-wise max of the visual feature and that embedding
(Sec. 3.3), and one shared classifier is trained on both with Loss = L(visual) + lambda * L(mixed) (Equ. 1).

    stream = SemanticStream(vectors, feature_dim=model.embedding_dim)     # vectors: (V, D), row 0 zeros
    logits, visual = net(images)                                          # the image model, unchanged
    token_ids = pad_token_ids(titles, max_len=32)                        # titles: lists of word ids >= 1
    semantic, _ = stream(token_ids)
    loss, parts = cotraining_loss(loss_fn, model.fc, visual, semantic, targets, weight=1.0,
                                  has_title=title_present(token_ids))

Contract: titles are a training-time input only (SICoT 3.3: "the proposed co-training scheme is only
involved in the training stage"). The stream is a separate module that lives next to the backbone, never
inside it, and the shared classifier is the image model's own `fc`; so the image model's forward, state-dict
keys and TorchScript export are exactly those of a model trained without titles, and inference needs neither
this module nor a title. The stream (its embeddings, attention and projection) is simply not exported.

Token ids: PAD_ID (0) is padding in every title; real words have ids >= 1, so a gensim `KeyedVectors`
table is used as `np.vstack([zeros(D), kv.vectors])` with word id = gensim index + 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tagmill.config import NONLINEARITIES
from tagmill.word_vector_files import PAD_ID

# Padding (PAD_ID) in every title: row PAD_ID of the embedding table is zeros and never trained, and padded
# positions get attention weight exactly 0, so a title's result does not depend on how much padding follows
# it. NONLINEARITIES: accepted by `BilinearWordAttention` after the pooling (SICoT 3.2 names none).

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


class BilinearWordAttention(nn.Module):
    """SICoT 3.2 bilinear word attention: which words of a noisy title matter, and their weighted sum.

    The paper gives this in words, not numbered equations (its only training equation is Equ. 1, the loss).
    For a title of word embeddings e_1..e_L (padding masked out), step by step as Sec. 3.2 describes:

    1. global context: "an average pooling operation to generate a global embedding from the word
       embeddings", c = (1/n) sum_{i real} e_i (order-free, no recurrent model);
    2. "a bilinear operation between the global context and all word embeddings ... to generate a second
       order feature map": z_ik = c^T W_k e_i for k = 1..slices, a (L, slices) map per title;
    3. "an average pooling operation and a nonlinear transformation": a_i = f(mean_k z_ik), f = tanh by
       default (the paper does not name f);
    4. attention vector: w = softmax over the real words of a (padding set to -inf before the softmax);
    5. "a semantic embedding ... achieved by the weighted sum": s = sum_i w_i e_i.

    Two properties to know. The pooling is linear and comes before f, so the slices together act as one
    bilinear form with W = mean_k W_k: `slices` changes the parameterization, not what can be expressed.
    With tanh, a_i lies in (-1, 1), so two words' weights differ by at most a factor e^2 ~ 7.4: noise words
    are damped, never silenced; "relu" lets the attention sharpen without bound.

    W_k start ~ N(0, (0.1/dim)^2), so a_i ~ 0 and the attention starts as the plain mean of the words
    (the "mean pooling" baseline of SICoT Table 3) and learns away from it.

    forward(embedded (B, L, dim) float, mask (B, L) bool, True = real word) -> (s (B, dim), w (B, L)).
    Rows of w sum to 1 over the real words and are exactly 0 on padding; a row with no real word gets
    s = 0 and w = 0 (never NaN). Values at padded positions never reach the output, whatever they are.
    """

    def __init__(self, dim: int, slices: int = 4, nonlinearity: str = "tanh"):
        super().__init__()
        if dim < 1 or slices < 1:
            raise ValueError(f"dim and slices must be at least 1, got dim={dim} and slices={slices}")
        if nonlinearity not in _ACTIVATIONS:
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; allowed: {', '.join(NONLINEARITIES)}")
        self.dim = dim
        self.slices = slices
        self.nonlinearity = nonlinearity
        self.weight = nn.Parameter(torch.empty(slices, dim, dim))
        nn.init.normal_(self.weight, mean=0.0, std=0.1 / dim)

    def forward(self, embedded: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if embedded.dim() != 3 or embedded.shape[2] != self.dim:
            raise ValueError(f"expected embedded words of shape (B, L, {self.dim}); got {tuple(embedded.shape)}")
        if mask.dtype != torch.bool or mask.shape != embedded.shape[:2]:
            raise ValueError(f"expected a bool mask of shape {tuple(embedded.shape[:2])} (True = real word); got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        # Zero the padded positions first: whatever they hold (even inf or NaN) cannot reach a sum below.
        embedded = embedded.masked_fill(~mask.unsqueeze(2), 0.0)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(embedded.dtype)
        context = embedded.sum(dim=1) / count                                           # (B, D)   step 1
        feature_map = torch.einsum("bd,kde,ble->blk", context, self.weight, embedded)  # (B, L, K) step 2
        scores = _ACTIVATIONS[self.nonlinearity](feature_map.mean(dim=2))               # (B, L)   step 3
        weights = masked_softmax(scores, mask)                                          # (B, L)   step 4
        return torch.einsum("bl,bld->bd", weights, embedded), weights                   # (B, D)   step 5


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over dim 1 of scores (B, L) restricted to mask (B, L) bool: exactly 0 where mask is False,
    rows summing to 1 where any entry is True, all-zero rows (not NaN, in value or gradient) where none is."""
    any_real = mask.any(dim=1, keepdim=True)
    # A row with no real word would be softmax over all -inf = NaN; it gets finite scores instead and the
    # final mask zeroes it.
    masked = torch.where(mask | ~any_real, scores, torch.full_like(scores, float("-inf")))
    return F.softmax(masked, dim=1) * mask


class SemanticStream(nn.Module):
    """SICoT's semantic stream (Fig. 5): word embeddings -> bilinear word attention -> projection.

    vectors: float (V, D) word vectors (numpy or torch, copied as float32), e.g. gensim's with a zero row
    prepended: row PAD_ID must be all zeros (checked: a nonzero row 0 usually means word ids were not
    shifted by one for padding). The embedding table starts equal to it ("the word embeddings are required
    initialized from a pretrained model like Word2vec", SICoT 3.3) and, with trainable=True (the default),
    is fine-tuned end to end; trainable=False keeps it fixed. The padding row is never updated.
    feature_dim: the visual feature's dimension (`ImageClassifier.embedding_dim`); the attention output is
    mapped to it by a Linear layer, so the two can be max-pooled ("the visual feature and the semantic
    embedding take a same dimension through a deliberate design of the network", 3.3). The paper names no
    nonlinearity there, so none is added. slices, nonlinearity: as in `BilinearWordAttention`.

    forward(token_ids (B, L) long, PAD_ID = padding) -> (semantic (B, feature_dim), attention (B, L)).
    A title of padding only has attention 0 and semantic = the projection's bias: it carries no side
    information, which `cotraining_loss(has_title=...)` accounts for.
    """

    def __init__(self, vectors: np.ndarray | Tensor, feature_dim: int, trainable: bool = True, *,
                 slices: int = 4, nonlinearity: str = "tanh"):
        super().__init__()
        if isinstance(vectors, Tensor):
            table = vectors.detach().to(device="cpu", dtype=torch.float32).clone()
        else:
            table = torch.tensor(np.asarray(vectors, dtype=np.float32))
        if table.dim() != 2 or table.shape[0] < 2 or table.shape[1] < 1:
            raise ValueError(f"expected word vectors of shape (V, D) with V >= 2 (padding + one word); got "
                             f"{tuple(table.shape)}")
        if table[PAD_ID].abs().sum() != 0:
            raise ValueError(f"row {PAD_ID} of the word vectors is padding and must be all zeros; found a nonzero "
                             f"row. Prepend a zero row (np.vstack([np.zeros(D), vectors])) and shift word ids by 1")
        if feature_dim < 1:
            raise ValueError(f"feature_dim must be at least 1, got {feature_dim}")
        self.vocab_size, self.word_dim = table.shape
        self.feature_dim = feature_dim
        self.embedding = nn.Embedding(self.vocab_size, self.word_dim, padding_idx=PAD_ID)
        with torch.no_grad():
            self.embedding.weight.copy_(table)
        self.embedding.weight.requires_grad_(trainable)
        self.attention = BilinearWordAttention(self.word_dim, slices=slices, nonlinearity=nonlinearity)
        self.projection = nn.Linear(self.word_dim, feature_dim)

    def forward(self, token_ids: Tensor) -> tuple[Tensor, Tensor]:
        if token_ids.dim() != 2 or token_ids.dtype != torch.long:
            raise ValueError(f"expected token ids as a long tensor (B, L); got {token_ids.dtype} "
                             f"{tuple(token_ids.shape)}")
        pooled, weights = self.attention(self.embedding(token_ids), token_ids != PAD_ID)
        return self.projection(pooled), weights


def title_present(token_ids: Tensor) -> Tensor:
    """(B,) bool: True where the row (B, L) holds at least one real word (an id other than PAD_ID)."""
    return (token_ids != PAD_ID).any(dim=1)


def mixed_feature(visual: Tensor, semantic: Tensor) -> Tensor:
    """SICoT 3.3 multi-modal feature x^m: "a max-pooling operation over the visual features and the semantic
    embeddings", i.e. the element-wise max of two tensors of the same shape (B, D). The gradient of each
    element goes to the larger input, so the mixed loss trains the visual stream too (the "tangled"
    feature learning of 3.3)."""
    if visual.shape != semantic.shape:
        raise ValueError(f"visual and semantic features must have the same shape; got {tuple(visual.shape)} and "
                         f"{tuple(semantic.shape)} (build SemanticStream with feature_dim = the visual dimension)")
    return torch.maximum(visual, semantic)


def cotraining_loss(loss_fn, classifier: nn.Module, visual: Tensor, semantic: Tensor, targets: Tensor,
                    weight: float, *, has_title: Tensor | None = None) -> tuple[Tensor, dict]:
    """SICoT Equ. 1: Loss = L(classifier(x^v)) + weight * L(classifier(x^m)), x^m = mixed_feature(x^v, x^s).

    loss_fn: any (logits, targets) -> scalar, e.g. `build_loss(...)` (the paper's is softmax cross entropy,
    "-1/N sum_i y_i . log(y^_i)"; with a multi-label loss the same sum is taken with that loss).
    classifier: the one shared head, the image model's `fc` (so classifier(visual) = the model's logits).
    visual (B, D), semantic (B, D), targets: whatever loss_fn takes. weight: lambda >= 0.
    has_title: (B,) bool, e.g. `title_present(token_ids)`; None means every row has one. A row without a title
    has no side information, so there is nothing to mix: its mixed feature is the visual feature alone
    (x^m = x^v), rather than the max with the projection's bias, which carries nothing about the image.
    weight 0: the mixed term is computed for the report only, outside the graph (the stream gets no grad).

    Returns (total loss, {"visual", "mixed", "semantic_share"}: detached 0-d tensors, so the caller reads them
    with the loss in one device sync): the two unweighted terms, and the share of the titled rows' mixed
    entries that the semantic embedding won (0 with no titled row).
    That share is how much the titles reach the shared classifier at all: the visual stream gets the mixed
    loss's gradient only where it won, the semantic stream only where it did, so near 0 the mixed term is
    the visual term again and the stream hardly learns.
    """
    if weight < 0:
        raise ValueError(f"the co-training weight (lambda) must be >= 0, got {weight}")
    mixed = mixed_feature(visual, semantic)
    if has_title is not None:
        if has_title.dtype != torch.bool or has_title.shape != visual.shape[:1]:
            raise ValueError(f"has_title must be a bool tensor of shape ({visual.shape[0]},); got {has_title.dtype} "
                             f"{tuple(has_title.shape)}")
        mixed = torch.where(has_title.unsqueeze(1), mixed, visual)
    with torch.no_grad():
        won = semantic > visual
        won = won[has_title] if has_title is not None else won
        share = won.float().mean() if won.numel() else visual.new_zeros(())
    visual_loss = loss_fn(classifier(visual), targets)
    if weight == 0:
        with torch.no_grad():
            mixed_loss = loss_fn(classifier(mixed), targets)
        total = visual_loss
    else:
        mixed_loss = loss_fn(classifier(mixed), targets)
        total = visual_loss + weight * mixed_loss
    return total, {"visual": visual_loss.detach(), "mixed": mixed_loss.detach(),
                   "semantic_share": share.to(visual_loss.dtype)}


def pad_token_ids(rows: list[list[int]], max_len: int) -> Tensor:
    """Titles as word-id lists -> a long tensor (len(rows), max_len): each row truncated to its first max_len
    ids and right-padded with PAD_ID. An empty row becomes all padding; a PAD_ID inside a row is treated as
    padding downstream. Ids must be >= 0."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    out = torch.full((len(rows), max_len), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids = list(row[:max_len])
        if any(t < 0 for t in ids):
            raise ValueError(f"row {i}: token ids must be >= 0 ({PAD_ID} = padding); found {min(ids)}")
        if ids:
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out
