"""Bad arguments are stopped at the door: every public function a notebook calls refuses a wrong
argument before any work, with a ValueError or TypeError naming the argument, what it got, and the fix."""

import pytest
import torch

import vae_lesson as vl

IMAGES = (torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
LABELS = torch.arange(12) % 10


def vae(latent_dim=2):
    torch.manual_seed(0)
    return vl.VAE(latent_dim=latent_dim, hidden_dim=8)


def ae(latent_dim=2):
    torch.manual_seed(0)
    return vl.Autoencoder(latent_dim=latent_dim, hidden_dim=8)


def classifier():
    return vl.metrics.DigitClassifier(hidden_dim=8)


# (what is wrong, the call, the exception, words naming the cause, words naming the fix)
BAD_IMAGES = {
    "uint8 pixels 0-255": ((IMAGES * 255).to(torch.uint8), TypeError, "uint8", ".float() / 255"),
    "float64 pixels": (IMAGES.double(), TypeError, "float64", ".float()"),
    "pixels normalised with mean and std": ((IMAGES - 0.1307) / 0.3081, ValueError, "below 0",
                                            "leave out the normalisation"),
    "pixels 0-255 as floats": (IMAGES * 255, ValueError, "above 1", "/ 255"),
    "NaN pixels": (IMAGES.masked_fill(IMAGES > 0.5, float("nan")), ValueError, "NaN",
                   "not the model or the learning rate"),
    "infinite pixels": (IMAGES.masked_fill(IMAGES > 0.5, float("inf")), ValueError, "infinite", "preprocessing"),
    "no channel dimension": (IMAGES[:, 0], ValueError, "(12, 28, 28)", ".unsqueeze(1)"),
    "a numpy array": (IMAGES.numpy(), TypeError, "ndarray", "torch.from_numpy"),
}
IMAGE_TAKERS = {
    "train": lambda images: vl.train(vae(), images, epochs=1, progress=False),
    "train (test_data)": lambda images: vl.train(vae(), IMAGES, images, epochs=1, progress=False),
    "evaluate": lambda images: vl.evaluate(vae(), images),
    "trained_model": lambda images: vl.trained_model("vae-2d", train_data=images, test_data=IMAGES),
    "encode_dataset": lambda images: vl.encode_dataset(ae(), images),
    "log_likelihood": lambda images: vl.log_likelihood(vae(), images, k=2),
    "classifier_accuracy": lambda images: vl.classifier_accuracy(classifier(), images, LABELS),
    "confident_fraction": lambda images: vl.confident_fraction(classifier(), images),
    "train_digit_classifier": lambda images: vl.train_digit_classifier(images, LABELS, epochs=1),
}


@pytest.mark.parametrize("taker", sorted(IMAGE_TAKERS))
@pytest.mark.parametrize("bad", sorted(BAD_IMAGES))
def test_bad_images_are_refused_naming_the_cause_and_the_fix(taker, bad, monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_LESSON_CHECKPOINTS", str(tmp_path))
    images, error, cause, fix = BAD_IMAGES[bad]
    with pytest.raises(error) as info:
        IMAGE_TAKERS[taker](images)
    message = str(info.value)
    assert cause in message and fix in message, message
    assert list(tmp_path.iterdir()) == []  # refused before any training


BAD_ARGUMENTS = [
    # (call, exception, words naming the argument and what it got, words naming the fix)
    (lambda: vl.train(vae(), IMAGES, epochs=0, progress=False), ValueError, "epochs must be a positive integer, got 0",
     ""),
    (lambda: vl.train(vae(), IMAGES, epochs=1, lr=0, progress=False), ValueError, "lr must be greater than 0, got 0",
     "uses 1e-3"),
    (lambda: vl.train(vae(), IMAGES, epochs=1, beta=-1, progress=False), ValueError, "beta must be at least 0, got -1",
     "use 1 for the ELBO"),
    (lambda: vl.train(vae(), IMAGES, epochs=1, batch_size=0, progress=False), ValueError,
     "batch_size must be a positive integer, got 0", ""),
    (lambda: vl.train(vae(), IMAGES, epochs="3", progress=False), TypeError, "epochs must be a whole number, got '3'",
     "epochs=2"),
    (lambda: vl.train(vl.trained_model, IMAGES, epochs=1, progress=False), TypeError,
     "model must be a vae_lesson model", "vl.VAE or vl.Autoencoder"),
    (lambda: vl.train((vae(), {}), IMAGES, epochs=1, progress=False), TypeError, "is a tuple (VAE, ...)",
     "model, history = vl.trained_model(...)"),
    (lambda: vl.evaluate(vae(), IMAGES, beta=-0.5), ValueError, "beta must be at least 0, got -0.5", ""),
    (lambda: vl.trained_model("vae-2d", latent_dim=0, train_data=IMAGES, test_data=IMAGES), ValueError,
     "latent_dim must be a positive whole number, got 0", ""),
    (lambda: vl.trained_model("vae-2d", lr=0, train_data=IMAGES, test_data=IMAGES), ValueError,
     "lr must be a positive number", "got 0"),
    (lambda: vl.sample_prior(vae(), 0), ValueError, "n must be a positive integer, got 0", ""),
    (lambda: vl.sample_prior(vae(), 2.5), ValueError, "n must be a positive integer, got 2.5", ""),
    (lambda: vl.sample_prior((vae(), {}), 4), TypeError, "is a tuple", "unpack it"),
    (lambda: vl.interpolate(vae(), IMAGES[:2], IMAGES[2:3]), ValueError, "x_a must be one image",
     "pick one, e.g. x_a[0]"),
    (lambda: vl.interpolate(vae(), IMAGES[0], IMAGES[1], steps=1), ValueError, "steps must be at least 2", ""),
    (lambda: vl.interpolate(vae(), IMAGES[0] * 255, IMAGES[1]), ValueError, "x_a has pixels up to 255", "/ 255"),
    (lambda: vl.latent_grid(vae(), n=0), ValueError, "n must be a positive integer, got 0", ""),
    (lambda: vl.latent_grid(vae(), low=0.9, high=0.1), ValueError, "0 < low < high < 1, got low=0.9, high=0.1",
     "default 0.05 and 0.95"),
    (lambda: vl.encode_dataset(vae(), IMAGES, batch_size=0), ValueError, "batch_size must be a positive integer", ""),
    (lambda: vl.log_likelihood(vae(), IMAGES, k=0), ValueError,
     "k (samples per image) must be a positive integer, got 0", ""),
    (lambda: vl.classifier_accuracy(classifier(), IMAGES, torch.nn.functional.one_hot(LABELS, 10)), ValueError,
     "labels are one-hot vectors, shape (12, 10)", "labels.argmax(dim=1)"),
    (lambda: vl.classifier_accuracy(classifier(), IMAGES, LABELS[:5]), ValueError,
     "one label per image (a digit each): shape (12,), got (5,)", ""),
    (lambda: vl.classifier_accuracy(classifier(), IMAGES, LABELS.float()), TypeError, "integer digits, got float32",
     "labels.long()"),
    (lambda: vl.train_digit_classifier(IMAGES, LABELS + 5), ValueError, "digits 0-9, got values from 5 to 14", ""),
    (lambda: vl.confident_fraction(classifier(), IMAGES, threshold=0), ValueError,
     "threshold is a probability in (0, 1]", "got 0"),
    (lambda: vl.gaussian_fit_kl(torch.randn(1, 2)), ValueError, "latents must have shape (N, latent_dim) with N >= 2",
     "vl.encode_dataset"),
    (lambda: vl.gaussian_fit_kl(torch.tensor([[1.0, float("nan")], [0.0, 1.0]])), ValueError, "NaN", "diverge"),
    (lambda: vl.mmd_to_standard_normal(torch.randn(10, 2), n=1), ValueError, "n must be at least 2", ""),
    (lambda: vl.mmd_to_standard_normal(torch.randn(10, 2).numpy()), TypeError, "float tensor of codes",
     "encode_dataset"),
    (lambda: vl.latent_explorer(ae(), vae(), torch.randn(12, 2), torch.randn(12, 2), LABELS.tolist()), TypeError,
     "labels must be a torch tensor", ""),
    (lambda: vl.latent_explorer(ae(), vae(), torch.randn(12, 2), torch.randn(12, 2), LABELS, max_points=0), ValueError,
     "max_points must be a positive integer, got 0", ""),
    (lambda: vl.latent_explorer(ae(), vae(), torch.randn(12, 3), torch.randn(12, 2), LABELS), ValueError,
     "ae_latents must have shape (N, 2)", "encode_dataset"),
]


@pytest.mark.parametrize("case", range(len(BAD_ARGUMENTS)))
def test_bad_arguments_are_refused_naming_the_argument_and_the_fix(case, monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_LESSON_CHECKPOINTS", str(tmp_path))
    call, error, cause, fix = BAD_ARGUMENTS[case]
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert cause in message and fix in message, message


def test_good_arguments_in_every_accepted_form_still_work():
    model = vae()
    for images in (IMAGES, IMAGES.reshape(12, 784), (IMAGES, LABELS)):
        vl.evaluate(model, images)
    assert vl.sample_prior(model, 3.0).shape == (3, 1, 28, 28)  # a whole number written as a float
    for one in (IMAGES[0], IMAGES[:1], IMAGES[0].reshape(784)):
        assert vl.interpolate(model, one, IMAGES[1], steps=3).shape == (3, 1, 28, 28)
    double = vae().double()
    vl.evaluate(double, IMAGES.double())  # float64 images are right for a float64 model
    with pytest.raises(TypeError, match=r"images is float32, but the model's weights are float64: pass "
                                        r"images.double\(\)"):
        vl.evaluate(double, IMAGES)
