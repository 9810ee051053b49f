"""labeling.codes: PCA/ITQ projections, packed sign codes and Hamming distances."""

import io

import numpy as np
import pytest

from tagmill.labeling.codes import Projection, encode, fit_projection, hamming


def clustered(n: int, dim: int, centres: int, seed: int) -> np.ndarray:
    """Embeddings around a few random centres, like a teacher's of a few categories."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)) * 3
    return (means[rng.integers(0, centres, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def test_codes_are_reproducible_for_a_seed():
    sample = clustered(500, 96, 8, seed=1)
    first, second = fit_projection(sample, 32, "itq", seed=5), fit_projection(sample, 32, "itq", seed=5)
    np.testing.assert_array_equal(first.rotation, second.rotation)
    np.testing.assert_array_equal(first.mean, second.mean)
    np.testing.assert_array_equal(encode(sample, first), encode(sample, second))


def test_save_and_load_give_the_same_codes():
    sample = clustered(300, 64, 5, seed=2)
    projection = fit_projection(sample, 64, "itq", seed=0)
    buffer = io.BytesIO()
    projection.save(buffer)
    buffer.seek(0)
    loaded = Projection.load(buffer)
    assert (loaded.method, loaded.bits) == ("itq", 64)
    np.testing.assert_array_equal(encode(sample, loaded), encode(sample, projection))


def test_code_bits_are_the_packed_signs_of_the_projection():
    sample = clustered(200, 40, 4, seed=3)
    projection = fit_projection(sample, 16, "pca")
    codes = encode(sample, projection)
    assert codes.shape == (200, 2) and codes.dtype == np.uint8
    unit = sample / np.linalg.norm(sample, axis=1, keepdims=True)
    signs = (unit - projection.mean) @ projection.rotation > 0
    np.testing.assert_array_equal(np.unpackbits(codes, axis=1).astype(bool), signs)


def test_itq_quantizes_better_than_pca():
    """ITQ's rotation lowers ||sign(VR) - VR||, the quantization loss it minimises (Gong & Lazebnik, eq. 2)."""
    sample = clustered(2000, 128, 20, seed=4)
    unit = sample / np.linalg.norm(sample, axis=1, keepdims=True)

    def loss(projection: Projection) -> float:
        v = (unit - projection.mean) @ projection.rotation
        v /= np.abs(v).mean()  # the loss compares shapes, not scales
        return float(((np.sign(v) - v) ** 2).sum())

    assert loss(fit_projection(sample, 32, "itq")) < 0.9 * loss(fit_projection(sample, 32, "pca"))


def test_nearby_embeddings_get_nearby_codes():
    rng = np.random.default_rng(5)
    sample = clustered(1500, 128, 30, seed=5)
    projection = fit_projection(sample, 64, "itq")
    nudged = sample + 0.05 * np.linalg.norm(sample, axis=1, keepdims=True) / 11 * rng.standard_normal(sample.shape)
    near = hamming(encode(sample, projection), encode(nudged.astype(np.float32), projection))
    far = hamming(encode(sample, projection), encode(sample[rng.permutation(1500)], projection))
    assert near.mean() < 4 and np.median(far) > 12


def test_hamming_counts_differing_bits():
    rng = np.random.default_rng(6)
    a, b = rng.integers(0, 256, (50, 8), dtype=np.uint8), rng.integers(0, 256, (50, 8), dtype=np.uint8)
    expected = (np.unpackbits(a, axis=1) != np.unpackbits(b, axis=1)).sum(axis=1)
    np.testing.assert_array_equal(hamming(a, b), expected)
    one_to_many = (np.unpackbits(a[:1], axis=1) != np.unpackbits(b, axis=1)).sum(axis=1)
    np.testing.assert_array_equal(hamming(a[:1], b), one_to_many)


def test_refuses_fewer_dimensions_than_bits():
    with pytest.raises(ValueError, match="lower image_pass.code_bits to at most 24"):
        fit_projection(clustered(100, 30, 3, seed=7), 64)
    with pytest.raises(ValueError, match="unknown code method"):
        fit_projection(clustered(100, 30, 3, seed=7), 16, "lsh")
    with pytest.raises(ValueError, match="shape"):
        encode(np.zeros((3, 31), np.float32), fit_projection(clustered(100, 30, 3, seed=7), 16))
