import math

import numpy as np

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, kl_divergence

from vae_lesson.data import offline_sample
from vae_lesson.metrics import (
    DigitClassifier,
    classifier_accuracy,
    confident_fraction,
    effective_class_count,
    gaussian_fit_kl,
    mmd_to_standard_normal,
    not_digits,
    train_digit_classifier,
)


class FixedLogits(nn.Module):
    """A 'classifier' whose outputs we choose: row i of `logits` for image i."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.calls = 0

    def forward(self, images):
        start = self.calls
        self.calls += images.shape[0]
        return self.logits[start:start + images.shape[0]]


def logits_with_top_probability(p):
    """Logits over 10 classes whose softmax puts probability p on class 0 and the rest evenly."""
    rest = (1 - p) / 9
    return torch.log(torch.tensor([p] + [rest] * 9))


def test_confident_fraction_counts_images_at_or_above_the_threshold():
    top = [0.95, 0.5, 0.9, 0.99, 0.2]  # three of five at or above 0.9
    logits = torch.stack([logits_with_top_probability(p) for p in top])
    images = torch.zeros(5, 1, 28, 28)
    assert confident_fraction(FixedLogits(logits), images, threshold=0.9) == pytest.approx(3 / 5)
    # batching must not change the answer
    assert confident_fraction(FixedLogits(logits), images, threshold=0.9, batch_size=2) == pytest.approx(3 / 5)
    assert confident_fraction(FixedLogits(logits), images, threshold=0.4) == pytest.approx(4 / 5)


def test_confident_fraction_rejects_a_threshold_outside_0_1():
    with pytest.raises(ValueError, match="threshold"):
        confident_fraction(DigitClassifier(8), torch.zeros(2, 1, 28, 28), threshold=90)


def logits_for(classes, p=0.95):
    """One row of logits per entry of `classes`: probability p on that class, the rest evenly."""
    return torch.stack([logits_with_top_probability(p).roll(int(c)) for c in classes])


def numpy_effective_count(labels):
    """exp(entropy) of the label histogram, computed independently with numpy."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    shares = counts / counts.sum()
    return float(np.exp(-(shares * np.log(shares)).sum()))


def test_effective_class_count_against_closed_forms():
    images = torch.zeros(12, 1, 28, 28)
    one_digit = FixedLogits(logits_for([3] * 12))
    assert effective_class_count(one_digit, images) == pytest.approx(1.0)
    three_even = FixedLogits(logits_for([3, 5, 8] * 4))
    assert effective_class_count(three_even, images) == pytest.approx(3.0)
    all_ten = FixedLogits(logits_for(list(range(10))))
    assert effective_class_count(all_ten, torch.zeros(10, 1, 28, 28)) == pytest.approx(10.0)


def test_effective_class_count_matches_numpy_and_ignores_unconfident_images():
    generator = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 10, (200,), generator=generator)
    confident = torch.rand(200, generator=generator) < 0.6
    logits = torch.stack([logits_with_top_probability(0.95 if c else 0.5).roll(int(k))
                          for k, c in zip(classes, confident)])
    expected = numpy_effective_count(classes[confident].numpy())
    images = torch.zeros(200, 1, 28, 28)
    assert effective_class_count(FixedLogits(logits), images, threshold=0.9) == pytest.approx(expected)
    assert effective_class_count(FixedLogits(logits), images, threshold=0.9, batch_size=7) == pytest.approx(expected)
    # with a threshold every image passes, the unconfident ones count too
    every = numpy_effective_count(classes.numpy())
    assert effective_class_count(FixedLogits(logits), images, threshold=0.4) == pytest.approx(every)


def test_effective_class_count_is_zero_without_confident_images_and_checks_arguments():
    images = torch.zeros(4, 1, 28, 28)
    assert effective_class_count(FixedLogits(logits_for([1, 2, 3, 4], p=0.5)), images) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        effective_class_count(DigitClassifier(8), images, threshold=1.5)
    with pytest.raises(ValueError, match="at least one image"):
        effective_class_count(DigitClassifier(8), torch.zeros(0, 1, 28, 28))


def test_classifier_accuracy_against_known_predictions():
    logits = torch.eye(10)[[3, 1, 4, 1, 5]] * 10
    labels = torch.tensor([3, 1, 4, 0, 0])
    assert classifier_accuracy(FixedLogits(logits), torch.zeros(5, 1, 28, 28), labels) == pytest.approx(3 / 5)


@pytest.fixture(scope="module")
def offline_digits():
    return offline_sample("train"), offline_sample("test")


def test_digit_classifier_learns_the_offline_sample(offline_digits):
    (train_x, train_y), (test_x, test_y) = offline_digits
    state = torch.random.get_rng_state()
    classifier = train_digit_classifier(train_x, train_y, epochs=5, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state), "training must not disturb the global RNG"
    assert not classifier.training
    assert classifier_accuracy(classifier, test_x, test_y) > 0.9
    # a confident judge of real digits, not of noise or of digits with their pixels shuffled
    gen = torch.Generator().manual_seed(0)
    assert confident_fraction(classifier, test_x) > 0.5
    assert confident_fraction(classifier, torch.rand(500, 1, 28, 28, generator=gen)) < 0.05
    shuffled = test_x.reshape(-1, 784)[:, torch.randperm(784, generator=gen)].reshape(-1, 1, 28, 28)
    assert confident_fraction(classifier, shuffled) < 0.05


def test_digit_classifier_is_seeded(offline_digits):
    (train_x, train_y), _ = offline_digits
    a = train_digit_classifier(train_x[:500], train_y[:500], epochs=1, seed=3)
    b = train_digit_classifier(train_x[:500], train_y[:500], epochs=1, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_not_digits_keeps_the_shape_and_the_ink_of_the_shuffled_half():
    digits = torch.rand(10, 1, 28, 28)
    fake = not_digits(digits, torch.Generator().manual_seed(0))
    assert fake.shape == digits.shape
    assert 0.0 <= fake.min() and fake.max() <= 1.0
    # the second half holds the same pixel values, moved around
    torch.testing.assert_close(fake[5:].flatten(1).sort(dim=1).values, digits[5:].flatten(1).sort(dim=1).values)
    assert not torch.equal(fake[5:], digits[5:])


def test_train_digit_classifier_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="one label per image"):
        train_digit_classifier(torch.zeros(4, 1, 28, 28), torch.zeros(3, dtype=torch.long))


def test_gaussian_fit_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.5, 0.3], [-0.4, 0.6]])
    latents = torch.randn(500, 2, generator=gen) @ mixing + torch.tensor([2.0, -1.0])
    z = latents.double()
    fitted = MultivariateNormal(z.mean(0), covariance_matrix=torch.cov(z.T))
    prior = MultivariateNormal(torch.zeros(2, dtype=torch.float64), covariance_matrix=torch.eye(2, dtype=torch.float64))
    assert gaussian_fit_kl(latents) == pytest.approx(kl_divergence(fitted, prior).item(), rel=1e-9)


def whitened(n, d, seed):
    """n points whose sample mean is exactly 0 and sample covariance exactly I."""
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z = z - z.mean(0)
    return z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T


def test_gaussian_fit_kl_against_closed_forms_for_shifted_and_scaled_codes():
    z = whitened(200, 3, seed=1)
    assert gaussian_fit_kl(z) == pytest.approx(0.0, abs=1e-9)
    # KL(N(mu, I) || N(0, I)) = |mu|^2 / 2
    assert gaussian_fit_kl(z + torch.tensor([2.0, 0.0, -1.0])) == pytest.approx(2.5, rel=1e-9)
    # KL(N(0, s^2 I) || N(0, I)) = d/2 (s^2 - 1 - log s^2)
    s = 3.0
    assert gaussian_fit_kl(z * s) == pytest.approx(1.5 * (s**2 - 1 - math.log(s**2)), rel=1e-9)


def test_gaussian_fit_kl_rejects_collapsed_codes():
    latents = torch.randn(100, 2)
    latents[:, 1] = 0.0
    with pytest.raises(ValueError, match="singular"):
        gaussian_fit_kl(latents)


def mmd_closed_form(shift, scale, d, h):
    """Population MMD^2 with an RBF kernel of bandwidth h between N(shift, scale^2 I) and N(0, I).

    E exp(-|u|^2 / 2h^2) for u ~ N(m, s^2 I) in d dims is (h^2/(h^2+s^2))^(d/2) exp(-|m|^2 / 2(h^2+s^2)).
    """
    def expected_kernel(mean_sq, var):
        return (h * h / (h * h + var)) ** (d / 2) * math.exp(-mean_sq / (2 * (h * h + var)))

    return (expected_kernel(0.0, 2 * scale**2) + expected_kernel(0.0, 2.0)
            - 2 * expected_kernel(shift**2, 1 + scale**2))


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (1.0, 1.0), (0.0, 3.0), (0.5, 0.3)])
def test_mmd_matches_its_closed_form_for_gaussians(shift, scale):
    d, n = 2, 2000
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    latents[:, 0] += shift
    estimate = mmd_to_standard_normal(latents, n=n, generator=gen)
    # the estimate's spread over seeds is about 0.005 at this n: 0.02 is four of those
    assert estimate == pytest.approx(mmd_closed_form(shift, scale, d, h=math.sqrt(d)), abs=0.02)


def test_mmd_is_near_zero_for_prior_samples_and_larger_for_others():
    gen = torch.Generator().manual_seed(2)
    prior_like = torch.randn(2000, 4, generator=gen)
    near = mmd_to_standard_normal(prior_like, generator=gen)
    assert abs(near) < 0.01
    assert mmd_to_standard_normal(prior_like * 0.2, generator=gen) > 10 * abs(near) + 0.05
    assert mmd_to_standard_normal(prior_like + 1.0, generator=gen) > 10 * abs(near) + 0.05


def test_mmd_subsamples_to_n_and_checks_its_arguments():
    latents = torch.randn(5000, 2)
    gen = torch.Generator().manual_seed(0)
    assert math.isfinite(mmd_to_standard_normal(latents, n=100, generator=gen))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_to_standard_normal(latents, bandwidth=0.0)
    with pytest.raises(ValueError, match=r"\(N, latent_dim\)"):
        mmd_to_standard_normal(torch.randn(10))
