"""SICoT co-training: masked bilinear word attention, the semantic stream's initialization, the mixed feature,
Equ. 1 against a hand computation, where gradients go, and a tiny end-to-end fit on titles."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from tagmill.trainer.backbones import build_model
from tagmill.trainer.side_info import (PAD_ID, BilinearWordAttention, SemanticStream, cotraining_loss,
                                       masked_softmax, mixed_feature, pad_token_ids, title_present)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _vectors(vocab: int = 12, dim: int = 6, seed: int = 0) -> np.ndarray:
    table = np.random.default_rng(seed).normal(size=(vocab, dim)).astype(np.float32)
    table[PAD_ID] = 0.0
    return table


MASK = torch.tensor([[True, True, True, False, False],
                     [True, False, False, False, False],
                     [True, True, True, True, True]])


def test_attention_weights_sum_to_one_over_words_and_are_exactly_zero_on_padding():
    torch.manual_seed(0)
    attention = BilinearWordAttention(4, slices=3)
    nn.init.normal_(attention.weight, std=1.0)  # far from uniform, so the check means something
    embedded = torch.randn(3, 5, 4, generator=_gen())
    pooled, weights = attention(embedded, MASK)
    assert pooled.shape == (3, 4) and weights.shape == (3, 5)
    assert torch.allclose(weights.sum(dim=1), torch.ones(3))
    assert torch.all(weights[~MASK] == 0)
    assert torch.all(weights[MASK] > 0)
    assert weights[0, :3].std() > 0.01  # not the uniform start: the scores do reach the weights
    assert weights[1, 0] == 1.0
    # The output is the weighted sum of the words.
    assert torch.allclose(pooled, (weights.unsqueeze(2) * embedded).sum(dim=1), atol=1e-6)


def test_attention_matches_the_steps_of_sicot_3_2_by_hand():
    torch.manual_seed(1)
    attention = BilinearWordAttention(3, slices=2, nonlinearity="tanh")
    nn.init.normal_(attention.weight, std=0.5)
    words = torch.randn(4, 3, generator=_gen(1), dtype=torch.float32)  # one title of 4 words, no padding
    pooled, weights = attention(words.unsqueeze(0), torch.ones(1, 4, dtype=torch.bool))
    w = attention.weight.detach()
    c = words.mean(dim=0)                                                       # global context
    a = [np.tanh(np.mean([float(c @ w[k] @ words[i]) for k in range(2)])) for i in range(4)]  # bilinear, pool, f
    expected = np.exp(a) / np.exp(a).sum()                                      # softmax over words
    assert np.allclose(weights[0].detach().numpy(), expected, atol=1e-6)
    assert np.allclose(pooled[0].detach().numpy(), expected @ words.numpy(), atol=1e-6)


def test_padded_positions_do_not_change_the_output():
    torch.manual_seed(2)
    attention = BilinearWordAttention(4, slices=2)
    nn.init.normal_(attention.weight, std=1.0)
    embedded = torch.randn(3, 5, 4, generator=_gen(2))
    garbage = embedded.clone()
    garbage[~MASK] = torch.randn(int((~MASK).sum()), 4, generator=_gen(3)) * 100
    garbage[0, 4, 0] = float("nan")
    pooled, weights = attention(embedded, MASK)
    pooled_g, weights_g = attention(garbage, MASK)
    assert torch.equal(pooled, pooled_g) and torch.equal(weights, weights_g)
    # More trailing padding does not change a title's result either.
    longer = torch.cat([embedded, torch.randn(3, 4, 4, generator=_gen(4))], dim=1)
    longer_mask = torch.cat([MASK, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    pooled_l, weights_l = attention(longer, longer_mask)
    assert torch.allclose(pooled_l, pooled, atol=1e-6)
    assert torch.allclose(weights_l[:, :5], weights, atol=1e-6) and torch.all(weights_l[:, 5:] == 0)


def test_semantic_stream_ignores_the_padding_row_and_padding_ids():
    stream = SemanticStream(_vectors(), feature_dim=5)
    ids = pad_token_ids([[3, 4, 5], [7]], max_len=4)
    out, weights = stream(ids)
    with torch.no_grad():
        stream.embedding.weight[PAD_ID] = 50.0  # padding's vector never reaches the output
    out_after, weights_after = stream(ids)
    assert torch.equal(out, out_after) and torch.equal(weights, weights_after)
    out_longer, _ = stream(pad_token_ids([[3, 4, 5], [7]], max_len=9))
    assert torch.allclose(out_longer, out, atol=1e-6)


def test_all_padding_row_gives_zero_weights_and_no_nan_even_in_gradients():
    attention = BilinearWordAttention(4)
    embedded = torch.randn(2, 3, 4, generator=_gen(5), requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled, weights = attention(embedded, mask)
    assert torch.all(weights[1] == 0) and torch.all(pooled[1] == 0)
    assert not torch.isnan(pooled).any() and not torch.isnan(weights).any()
    (pooled.sum() + weights.sum()).backward()
    assert torch.isfinite(embedded.grad).all() and torch.isfinite(attention.weight.grad).all()
    assert torch.all(embedded.grad[1] == 0)
    # masked_softmax on its own.
    scores = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    probs = masked_softmax(scores, mask)
    assert torch.allclose(probs[0], torch.cat([torch.softmax(torch.tensor([1.0, 2.0]), dim=0), torch.zeros(1)]))
    assert torch.equal(probs[1], torch.zeros(3))


def test_semantic_stream_starts_from_the_given_vectors_and_has_the_visual_dimension():
    vectors = _vectors(vocab=10, dim=6)
    stream = SemanticStream(vectors, feature_dim=16)
    assert torch.equal(stream.embedding.weight.detach(), torch.from_numpy(vectors))
    assert torch.all(stream.embedding.weight[PAD_ID] == 0)
    assert stream.embedding.padding_idx == PAD_ID
    out, weights = stream(pad_token_ids([[1, 2, 3], [9], []], max_len=4))
    assert out.shape == (3, 16) and weights.shape == (3, 4)
    assert torch.all(weights[2] == 0) and torch.allclose(weights[:2].sum(dim=1), torch.ones(2))
    frozen = SemanticStream(torch.from_numpy(vectors), feature_dim=16, trainable=False)
    assert not frozen.embedding.weight.requires_grad


def test_semantic_stream_rejects_a_nonzero_padding_row():
    vectors = _vectors()
    vectors[PAD_ID] = 1.0
    with pytest.raises(ValueError, match="Prepend a zero row"):
        SemanticStream(vectors, feature_dim=4)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="allowed: tanh, relu, sigmoid"):
        BilinearWordAttention(4, nonlinearity="gelu")
    attention = BilinearWordAttention(4)
    with pytest.raises(ValueError, match=r"\(B, L, 4\)"):
        attention(torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool mask"):
        attention(torch.zeros(2, 3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="long tensor"):
        SemanticStream(_vectors(), feature_dim=4)(torch.ones(2, 3, dtype=torch.int32))


def test_pad_token_ids_pads_right_and_truncates():
    ids = pad_token_ids([[5, 6, 7, 8], [2], []], max_len=3)
    assert ids.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [2, PAD_ID, PAD_ID], [PAD_ID] * 3]
    assert title_present(ids).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="max_len"):
        pad_token_ids([[1]], max_len=0)
    with pytest.raises(ValueError, match=">= 0"):
        pad_token_ids([[1, -2]], max_len=3)


def test_mixed_feature_is_the_element_wise_max():
    v = torch.tensor([[1.0, -2.0, 3.0], [0.0, 5.0, -1.0]])
    s = torch.tensor([[2.0, -3.0, 3.0], [-1.0, 6.0, 0.5]])
    assert mixed_feature(v, s).tolist() == [[2.0, -2.0, 3.0], [0.0, 6.0, 0.5]]
    with pytest.raises(ValueError, match="same shape"):
        mixed_feature(v, s[:, :2])


def _tiny_classifier() -> nn.Linear:
    classifier = nn.Linear(3, 2).double()
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [0.5, 2.0, -1.0]]))
        classifier.bias.copy_(torch.tensor([0.1, -0.2], dtype=torch.float64))
    return classifier


V = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]], dtype=torch.float64)
S = torch.tensor([[0.5, 1.0, 0.5], [2.0, -1.0, 3.0]], dtype=torch.float64)
M = torch.tensor([[1.0, 1.0, 0.5], [2.0, 1.0, 3.0]], dtype=torch.float64)  # max(V, S) written out


def _by_hand_logits(x: torch.Tensor) -> list[list[float]]:
    w, b = [[1.0, -0.5, 0.25], [0.5, 2.0, -1.0]], [0.1, -0.2]
    return [[sum(wi * xi for wi, xi in zip(w[c], row)) + b[c] for c in range(2)] for row in x.tolist()]


def _bce(logits, targets) -> float:
    terms = [-(y * np.log(1 / (1 + np.exp(-z))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-z))))
             for lrow, trow in zip(logits, targets) for z, y in zip(lrow, trow)]
    return float(np.mean(terms))


def _ce(logits, labels) -> float:
    return float(np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(np.array(logits), labels)]))


def _floats(parts: dict) -> dict:
    return {name: value.item() for name, value in parts.items()}


def test_cotraining_loss_with_bce_matches_the_hand_computation():
    targets = [[1.0, 0.0], [1.0, 1.0]]
    total, parts = cotraining_loss(nn.BCEWithLogitsLoss(), _tiny_classifier(), V, S,
                                   torch.tensor(targets, dtype=torch.float64), weight=0.3)
    visual, mixed = _bce(_by_hand_logits(V), targets), _bce(_by_hand_logits(M), targets)
    # S wins 1 entry of row 0 (a tie is V's) and 2 of row 1
    assert _floats(parts) == pytest.approx({"visual": visual, "mixed": mixed, "semantic_share": 3 / 6}, rel=1e-12)
    assert total.item() == pytest.approx(visual + 0.3 * mixed, rel=1e-12)


def test_cotraining_loss_with_cross_entropy_matches_the_hand_computation():
    labels = [1, 0]
    total, parts = cotraining_loss(nn.CrossEntropyLoss(), _tiny_classifier(), V, S, torch.tensor(labels),
                                   weight=2.0)
    visual, mixed = _ce(_by_hand_logits(V), labels), _ce(_by_hand_logits(M), labels)
    assert _floats(parts) == pytest.approx({"visual": visual, "mixed": mixed, "semantic_share": 0.5}, rel=1e-12)
    assert total.item() == pytest.approx(visual + 2.0 * mixed, rel=1e-12)


def test_rows_without_a_title_mix_nothing():
    labels = torch.tensor([1, 0])
    _, parts = cotraining_loss(nn.CrossEntropyLoss(), _tiny_classifier(), V, S, labels, weight=1.0,
                               has_title=torch.tensor([True, False]))
    mixed_rows = torch.stack([M[0], V[1]])
    assert parts["mixed"].item() == pytest.approx(_ce(_by_hand_logits(mixed_rows), [1, 0]), rel=1e-12)
    assert parts["semantic_share"].item() == pytest.approx(1 / 3)  # the titled row only
    _, none = cotraining_loss(nn.CrossEntropyLoss(), _tiny_classifier(), V, S, labels, weight=1.0,
                              has_title=torch.tensor([False, False]))
    assert none["semantic_share"].item() == 0.0
    with pytest.raises(ValueError, match="has_title"):
        cotraining_loss(nn.CrossEntropyLoss(), _tiny_classifier(), V, S, labels, 1.0, has_title=torch.ones(2))
    with pytest.raises(ValueError, match=">= 0"):
        cotraining_loss(nn.CrossEntropyLoss(), _tiny_classifier(), V, S, labels, weight=-1.0)


def _stream_batch(weight: float):
    torch.manual_seed(3)
    stream = SemanticStream(_vectors(vocab=12, dim=6), feature_dim=8)
    classifier = nn.Linear(8, 3)
    ids = pad_token_ids([[1, 2, 3], [4, 5], [6, 7, 8, 9]], max_len=5)
    visual = torch.randn(3, 8, generator=_gen(6), requires_grad=True)
    semantic, _ = stream(ids)
    total, _ = cotraining_loss(nn.CrossEntropyLoss(), classifier, visual, semantic, torch.tensor([0, 1, 2]),
                               weight, has_title=title_present(ids))
    total.backward()
    return stream, classifier, visual


def test_gradients_reach_the_embeddings_the_attention_the_projection_and_the_classifier():
    stream, classifier, visual = _stream_batch(weight=1.0)
    emb_grad = stream.embedding.weight.grad
    assert emb_grad[1:10].abs().sum(dim=1).gt(0).all()      # every word used in the batch
    assert torch.all(emb_grad[PAD_ID] == 0) and torch.all(emb_grad[10:] == 0)  # padding, unused words
    assert stream.attention.weight.grad.abs().sum() > 0
    assert stream.projection.weight.grad.abs().sum() > 0
    assert classifier.weight.grad.abs().sum() > 0 and visual.grad.abs().sum() > 0


def test_weight_zero_gives_the_semantic_stream_no_gradient():
    stream, classifier, visual = _stream_batch(weight=0.0)
    assert all(p.grad is None for p in stream.parameters())
    assert classifier.weight.grad.abs().sum() > 0 and visual.grad.abs().sum() > 0


def _synthetic(n: int, rng: np.random.Generator, classes: int = 4, noise_words: int = 20):
    """Titles decide the class: the class word (id 1..classes) at a random place among 2-5 noise words
    (ids above), right-padded to 8; the "visual" features are pure noise."""
    labels = rng.integers(classes, size=n)
    noise = rng.integers(classes + 1, classes + 1 + noise_words, size=(n, 7))
    noise_len = rng.integers(2, 6, size=(n, 1))
    place = rng.integers(0, noise_len + 1)
    col = np.arange(8)[None, :]
    shifted = np.concatenate([noise[:, :1], noise], axis=1)  # shifted[:, j] = noise[:, j - 1]
    ids = np.where(col < place, np.concatenate([noise, noise[:, :1]], axis=1),
                   np.where(col == place, labels[:, None] + 1, np.where(col <= noise_len, shifted, PAD_ID)))
    visual = np.abs(rng.normal(size=(n, 16))).astype(np.float32)
    return torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(visual)


@pytest.fixture
def one_thread():
    # Tensors this small only pay for thread hand-offs; on a loaded machine they cost 10x the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cotraining_learns_from_titles_when_the_images_carry_nothing(one_thread):
    started = time.time()
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    classes = 4
    vectors = np.random.default_rng(7).normal(scale=0.5, size=(1 + classes + 20, 8)).astype(np.float32)
    vectors[PAD_ID] = 0.0
    stream = SemanticStream(vectors, feature_dim=16)
    classifier = nn.Linear(16, classes)
    optimizer = torch.optim.Adam([*stream.parameters(), *classifier.parameters()], lr=0.02)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(200):
        ids, labels, visual = _synthetic(64, rng)
        semantic, _ = stream(ids)
        total, _ = cotraining_loss(loss_fn, classifier, visual, semantic, labels, weight=1.0,
                                   has_title=title_present(ids))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    ids, labels, visual = _synthetic(512, np.random.default_rng(8))  # fresh rows
    with torch.no_grad():
        semantic, weights = stream(ids)
        mixed_accuracy = (classifier(mixed_feature(visual, semantic)).argmax(1) == labels).float().mean().item()
        visual_accuracy = (classifier(visual).argmax(1) == labels).float().mean().item()
    assert mixed_accuracy > 0.9, mixed_accuracy        # chance is 0.25
    assert visual_accuracy < 0.4, visual_accuracy      # noise images: nothing to learn there
    # The class word gets more than its uniform share of the attention.
    class_word = (ids >= 1) & (ids <= classes)
    uniform = (1.0 / (ids != PAD_ID).sum(dim=1, keepdim=True).float()).expand_as(weights)
    assert (weights[class_word] > uniform[class_word]).float().mean() > 0.95
    assert weights[class_word].mean() > 2 * uniform[class_word].mean()
    assert time.time() - started < 5


def test_the_image_model_is_untouched_by_co_training(one_thread):
    # The stream lives next to the model and the shared classifier is the model's own fc: after a co-training
    # step the model has exactly the state-dict entries of a model that never saw a title, and its forward
    # (images -> logits, embedding) is the one used at inference.
    torch.manual_seed(4)
    model = build_model("resnet18", num_classes=3)
    before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stream = SemanticStream(_vectors(vocab=12, dim=6), feature_dim=model.embedding_dim)
    images = torch.randn(2, 3, 32, 32, generator=_gen(9))
    ids = pad_token_ids([[1, 2], [3]], max_len=4)
    logits, visual = model(images)
    semantic, _ = stream(ids)
    total, _ = cotraining_loss(nn.CrossEntropyLoss(), model.fc, visual, semantic, torch.tensor([0, 2]), 1.0)
    total.backward()
    assert torch.allclose(model.fc(visual), logits)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == before
    assert model.conv1.weight.grad is not None and stream.embedding.weight.grad is not None
