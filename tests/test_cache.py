import dataclasses
import warnings

import pytest
import torch

import vae_lesson.cache as cache
import vae_lesson.training as training
from vae_lesson import RECIPES, TrainingConfig, load_checkpoint, save_checkpoint, trained_model

CONFIG = TrainingConfig(kind="vae", latent_dim=2, hidden_dim=8, epochs=1)


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


def get(digits, config=CONFIG, **changes):
    return trained_model(config, train_data=digits[0], test_data=digits[1], progress=False, **changes)


def entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_second_call_loads_instead_of_training(digits, train_calls, tmp_path):
    model, history = get(digits)
    assert len(train_calls) == 1
    identity = cache.cache_identity(CONFIG, *digits)
    assert entries(tmp_path) == [cache.cache_key(identity) + ".pt"]
    again, history_again = get(digits)
    assert len(train_calls) == 1
    assert history_again == history
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_a_recipe_by_name_trains_with_its_settings(digits, train_calls, monkeypatch):
    monkeypatch.setitem(RECIPES, "tiny", CONFIG.replace(batch_size=64, lr=2e-3))
    model, _ = trained_model("tiny", train_data=digits[0], test_data=digits[1], progress=False, beta=0.5)
    assert model.config == {"kind": "vae", "latent_dim": 2, "hidden_dim": 8}
    assert {k: train_calls[0][k] for k in ("epochs", "batch_size", "lr", "beta", "seed")} == \
        {"epochs": 1, "batch_size": 64, "lr": 2e-3, "beta": 0.5, "seed": 0}


def test_every_course_model_is_a_named_recipe():
    assert {"ae-2d", "vae-2d", "vae-20d-lecture", "vae-20d-collapse-sweep"} <= set(RECIPES)
    lecture = RECIPES["vae-20d-lecture"]
    assert (lecture.kind, lecture.latent_dim, lecture.hidden_dim, lecture.epochs, lecture.batch_size, lecture.lr,
            lecture.lr_schedule) == ("vae", 20, 500, 30, 256, 2e-3, "cosine")


def test_a_changed_configuration_trains_again(digits, train_calls, tmp_path):
    get(digits)
    get(digits, epochs=2)
    get(digits, kind="autoencoder")
    assert len(train_calls) == 3
    assert len(entries(tmp_path)) == 3


def test_the_key_changes_with_every_field_the_data_and_the_training_version(digits, monkeypatch):
    train_images, test_images = digits
    changes = dict(kind="autoencoder", latent_dim=20, hidden_dim=400, epochs=30, batch_size=64, lr=3e-4,
                   lr_schedule="cosine", beta=4.0, seed=1, warmup_epochs=2, free_bits=0.5)
    assert set(changes) == {field.name for field in dataclasses.fields(TrainingConfig)}  # a new field is tested too
    keys = {cache.cache_key(cache.cache_identity(CONFIG, train_images, test_images))}
    for name, value in changes.items():
        keys.add(cache.cache_key(cache.cache_identity(CONFIG.replace(**{name: value}), train_images, test_images)))
    # Training data of the same size but other values, and other test data (its losses are in the history).
    flipped = train_images.clone()
    flipped[0, 0, 0, 0] = 1 - flipped[0, 0, 0, 0]
    keys.add(cache.cache_key(cache.cache_identity(CONFIG, flipped, test_images)))
    keys.add(cache.cache_key(cache.cache_identity(CONFIG, train_images, test_images[:-1])))
    monkeypatch.setattr(cache, "TRAINING_VERSION", training.TRAINING_VERSION + 1)
    keys.add(cache.cache_key(cache.cache_identity(CONFIG, train_images, test_images)))
    assert len(keys) == 1 + len(changes) + 3


def test_beta_4_and_4_0_are_one_entry(digits):
    four, four_point_zero = CONFIG.replace(beta=4), CONFIG.replace(beta=4.0)
    assert cache.cache_identity(four, *digits) == cache.cache_identity(four_point_zero, *digits)


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
    path = tmp_path / (cache.cache_key(cache.cache_identity(CONFIG, *digits)) + ".pt")
    path.write_bytes(b"truncated")
    get(digits)
    assert len(train_calls) == 1
    get(digits)
    assert len(train_calls) == 1  # the replacement is a valid checkpoint


def test_an_entry_trained_from_something_else_is_retrained_never_loaded(digits, train_calls, tmp_path):
    """A file under the right name whose stored identity differs (an older training version, a renamed
    file, another architecture) is trained over."""
    identity = cache.cache_identity(CONFIG, *digits)
    path = tmp_path / (cache.cache_key(identity) + ".pt")
    for stored, model in [({**identity, "training_version": 0}, None), ({}, None),
                          (identity, TrainingConfig(kind="autoencoder", latent_dim=3, hidden_dim=5))]:
        impostor = cache.fresh_model(model or CONFIG, digits[0])
        save_checkpoint(path, impostor, {"epoch": [1]}, metadata=stored)
        loaded, history = get(digits)
        assert history["epoch"] == [1] and "test_loss" in history
        assert loaded.config == CONFIG.model_config
        assert not torch.equal(loaded.decoder.out.weight, cache.fresh_model(CONFIG, digits[0]).decoder.out.weight)
    assert len(train_calls) == 3
    assert load_checkpoint(path)[0].config == CONFIG.model_config


def test_a_cache_that_cannot_be_written_warns_and_still_returns_the_model(digits, train_calls, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(blocker))
    with pytest.warns(cache.CacheWriteWarning, match="could not be saved.*returned.*VAE_LESSON_CHECKPOINTS"):
        model, history = get(digits)
    assert len(history["epoch"]) == 1 and model.config == CONFIG.model_config


def test_models_start_from_the_mean_training_image(digits, train_calls, monkeypatch):
    started = []
    real = cache.fresh_model

    def recording(config, images):
        started.append((config.kind, images))
        return real(config, images)

    monkeypatch.setattr(cache, "fresh_model", recording)
    get(digits)
    trained_model(CONFIG.replace(kind="autoencoder"), train_data=(digits[0], torch.zeros(300, dtype=torch.long)),
                  test_data=digits[1], progress=False)
    assert [kind for kind, _ in started] == ["vae", "autoencoder"]
    assert all(images is digits[0] for _, images in started)  # the training images, also from a pair


def test_an_old_style_call_names_the_recipes(digits):
    with pytest.raises(ValueError, match=r"unknown recipe 'vae'.*vae-2d.*TrainingConfig\(kind='vae'"):
        trained_model("vae", train_data=digits[0], test_data=digits[1])
    with pytest.raises(TypeError, match="no field 'latent_size'.*latent_dim"):
        trained_model("vae-2d", latent_size=2, train_data=digits[0], test_data=digits[1])


@pytest.mark.parametrize("entry", ["bare state_dict", "config without hidden_dim", "newer format",
                                   "weights of another size", "a folder"])
def test_the_cache_retrains_over_any_entry_it_cannot_use(digits, train_calls, tmp_path, entry):
    identity = cache.cache_identity(CONFIG, *digits)
    path = tmp_path / (cache.cache_key(identity) + ".pt")
    model = cache.fresh_model(CONFIG, digits[0])
    payload = {"format": 2, "config": CONFIG.model_config, "state_dict": model.state_dict(), "history": {},
               "metadata": identity}
    if entry == "a folder":
        path.mkdir()
    else:
        payload = {
            "bare state_dict": model.state_dict(),
            "config without hidden_dim": {**payload, "config": {"kind": "vae", "latent_dim": 2}},
            "newer format": {**payload, "format": 99},
            "weights of another size": {**payload, "state_dict": cache.fresh_model(CONFIG.replace(latent_dim=3),
                                                                                 digits[0]).state_dict()},
        }[entry]
        torch.save(payload, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded, history = get(digits)
    assert len(train_calls) == 1 and loaded.config == CONFIG.model_config and history["epoch"] == [1]
    if entry == "a folder":  # cannot be replaced: the model is still returned, with a warning that says so
        assert any(issubclass(w.category, cache.CacheWriteWarning) for w in caught)
    else:
        get(digits)
        assert len(train_calls) == 1  # replaced by a good entry


def test_the_remedies_for_collapse_keep_the_entries_of_models_trained_without_them(digits):
    """warmup_epochs and free_bits are off by default and train exactly as before they existed, so while
    off they leave the identity as it was (a model cached earlier is reused); on, they change it."""
    identity = cache.cache_identity(CONFIG, *digits)
    assert set(identity["config"]) == {field.name for field in dataclasses.fields(TrainingConfig)} - set(
        cache.OFF_BY_DEFAULT_FIELDS)
    assert cache.cache_identity(CONFIG.replace(warmup_epochs=0, free_bits=0), *digits) == identity
    assert cache.cache_identity(CONFIG.replace(free_bits=0.5), *digits)["config"]["free_bits"] == 0.5
