"""Class prototypes (trainer.prototypes): exact means, scores, and the fitted temperature."""

import math

import numpy as np
import pytest

from tagmill.trainer.prototypes import (TEMPERATURES, fit_temperature, prototype_scores, prototype_sums,
                                        prototypes_of, temperature_losses)


def test_a_prototype_is_the_unit_mean_of_its_images_unit_embeddings():
    embeddings = np.array([[3.0, 0.0], [0.0, 0.5], [2.0, 0.0]], np.float32)
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)  # class 2 has no image
    prototypes = prototypes_of(prototype_sums(embeddings, targets))
    np.testing.assert_allclose(prototypes, [[math.sqrt(0.5), math.sqrt(0.5)], [1.0, 0.0], [0.0, 0.0]], rtol=1e-6)
    assert prototypes.dtype == np.float32


def test_scores_are_a_softmax_of_the_cosines_over_the_temperature():
    prototypes = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
    scores = prototype_scores(np.array([[5.0, 0.0]], np.float32), prototypes, 0.5)
    # cosines 1, 0 -> softmax of (2, 0); the class without a prototype (no training image) scores 0
    e2 = math.exp(2.0)
    np.testing.assert_allclose(scores, [[e2 / (e2 + 1), 1 / (e2 + 1), 0.0]], rtol=1e-6)


def test_the_fitted_temperature_is_the_one_that_matches_how_often_the_nearest_class_is_right():
    # every image sits on prototype 0, at cosine 0.8 to prototype 1: at temperature T the model gives
    # class 0 the probability 1 / (1 + exp(-0.2 / T)); the images carry class 0 that often at T = 0.05
    middle = TEMPERATURES[len(TEMPERATURES) // 2]
    assert middle == pytest.approx(0.05)
    right = 1 / (1 + math.exp(-0.2 / middle))
    n = 10_000
    own = round(right * n)
    targets = np.zeros((n, 2), np.float32)
    targets[:own, 0] = 1
    targets[own:, 1] = 1
    prototypes = np.array([[1.0, 0.0], [0.8, 0.6]], np.float32)
    embeddings = np.tile(np.array([[1.0, 0.0]], np.float32), (n, 1))
    losses = temperature_losses(embeddings, targets, prototypes)
    assert fit_temperature(losses) == pytest.approx(middle)
    # the losses of batches add up to the whole's
    halves = sum(temperature_losses(embeddings[part], targets[part], prototypes)
                 for part in (slice(0, n // 2), slice(n // 2, n)))
    np.testing.assert_allclose(halves, losses, rtol=1e-9)
    # images no class names tell nothing: the middle temperature
    assert fit_temperature(temperature_losses(embeddings, np.zeros_like(targets), prototypes)) == pytest.approx(middle)
