import pytest
import torch

import vae_lesson.cache as cache
from vae_lesson import trained_model


@pytest.fixture
def digits():
    g = torch.Generator().manual_seed(0)
    train_images = (torch.rand(300, 1, 28, 28, generator=g) < 0.2).float()
    test_images = (torch.rand(50, 1, 28, 28, generator=g) < 0.2).float()
    return train_images, test_images


@pytest.fixture
def train_calls(monkeypatch, tmp_path):
    """Point the cache at tmp_path, count calls to train, and make sure MNIST is never loaded."""
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path))
    calls = []
    real_train = cache.train

    def counting_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    def no_mnist(*args, **kwargs):
        raise AssertionError("load_mnist should not be called when data is given")

    monkeypatch.setattr(cache, "train", counting_train)
    monkeypatch.setattr(cache, "load_mnist", no_mnist)
    return calls


def get(digits, **overrides):
    settings = dict(kind="vae", latent_dim=2, hidden_dim=8, epochs=1, train_data=digits[0], test_data=digits[1],
                    progress=False)
    settings.update(overrides)
    return trained_model(**settings)


def test_second_call_loads_instead_of_training(digits, train_calls, tmp_path):
    model, history = get(digits)
    assert len(train_calls) == 1
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [cache.cache_key("vae", 2, 8, 1, 1.0, 1e-3, 128, 0, 300) + ".pt"]
    again, history_again = get(digits)
    assert len(train_calls) == 1
    assert history_again == history
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_a_changed_configuration_trains_again(digits, train_calls, tmp_path):
    get(digits)
    get(digits, epochs=2)
    get(digits, kind="autoencoder")
    assert len(train_calls) == 3
    assert len(list(tmp_path.iterdir())) == 3


def test_key_changes_with_every_setting_and_the_data_size():
    base = dict(kind="vae", latent_dim=2, hidden_dim=500, epochs=10, beta=1.0, lr=1e-3, batch_size=128, seed=0,
                n_train=60000)
    changes = dict(kind="autoencoder", latent_dim=20, hidden_dim=400, epochs=30, beta=4.0, lr=3e-4, batch_size=64,
                   seed=1, n_train=4000, lr_schedule="cosine")
    keys = {cache.cache_key(**base)}
    for name, value in changes.items():
        keys.add(cache.cache_key(**{**base, name: value}))
    assert len(keys) == 1 + len(changes)


def test_training_is_reproducible_and_leaves_the_global_rng_alone(digits, train_calls, tmp_path, monkeypatch):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model, history = get(digits)
    assert torch.equal(torch.rand(3), expected_next)
    # A fresh cache directory trains again from scratch and gets the same model.
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "fresh"))
    retrained, retrained_history = get(digits)
    assert len(train_calls) == 2
    assert retrained_history == history
    for name, value in model.state_dict().items():
        assert torch.equal(value, retrained.state_dict()[name]), name


def test_an_unreadable_cache_entry_is_retrained_and_replaced(digits, train_calls, tmp_path):
    path = tmp_path / (cache.cache_key("vae", 2, 8, 1, 1.0, 1e-3, 128, 0, 300) + ".pt")
    path.write_bytes(b"truncated")
    model, _ = get(digits)
    assert len(train_calls) == 1
    get(digits)
    assert len(train_calls) == 1  # the replacement is a valid checkpoint


def test_models_start_from_the_mean_training_image(digits, train_calls, monkeypatch):
    started = []
    real = cache.set_output_bias_to_mean_image

    def recording(model, images):
        started.append((model.kind, images))
        return real(model, images)

    monkeypatch.setattr(cache, "set_output_bias_to_mean_image", recording)
    get(digits)
    get(digits, kind="autoencoder", train_data=(digits[0], torch.zeros(300, dtype=torch.long)))
    assert [kind for kind, _ in started] == ["vae", "autoencoder"]
    assert all(images is digits[0] for _, images in started)  # the training images, also from a pair
