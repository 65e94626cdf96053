import json
import os
import subprocess
import sys

import matplotlib.image
import pytest
import torch

import vae_lesson.__main__ as cli
from vae_lesson import load_checkpoint


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def fake_mnist(monkeypatch):
    """Small random digits instead of MNIST; records the roots it was asked for."""
    g = torch.Generator().manual_seed(0)
    splits = {"train": (torch.rand(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g)),
              "test": (torch.rand(40, 1, 28, 28, generator=g), torch.randint(0, 10, (40,), generator=g))}
    roots = []

    def load_mnist(split="train", root=None, download=True):
        roots.append(root)
        return splits[split]

    monkeypatch.setattr(cli, "load_mnist", load_mnist)
    return roots


# The CLI on every device present: the CPU always, a CUDA GPU where there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["vae", "autoencoder"])
def test_train_writes_checkpoint_history_and_figure(tmp_path, fake_mnist, capsys, model, device):
    out = tmp_path / "run"
    code = cli.main(["train", "--model", model, "--latent-dim", "3", "--hidden-dim", "8", "--epochs", "2",
                     "--batch-size", "64", "--lr", "2e-3", "--seed", "1", "--data", str(tmp_path / "mnist"),
                     "--out", str(out), "--device", device, "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "model.pt", "samples.png"]
    assert fake_mnist == [tmp_path / "mnist"] * 2

    loaded, history = load_checkpoint(out / "model.pt")
    assert loaded.config == {"kind": model, "latent_dim": 3, "hidden_dim": 8}
    assert json.loads((out / "history.json").read_text()) == history
    assert history["epoch"] == [1, 2]
    assert len(history["test_loss"]) == 2

    figure = matplotlib.image.imread(out / "samples.png")
    assert figure.ndim == 3 and figure.shape[0] > 100 and figure.shape[1] > 100

    for name in ("history.json", "model.pt", "samples.png"):  # readable by others, like any file (umask 022)
        assert (out / name).stat().st_mode & 0o777 == 0o644

    printed = capsys.readouterr().out
    assert f"test loss {history['test_loss'][-1]:.2f}" in printed
    assert str(out / "model.pt") in printed


def test_same_seed_same_checkpoint(tmp_path, fake_mnist):
    args = ["train", "--latent-dim", "2", "--hidden-dim", "4", "--epochs", "1", "--no-progress", "--out"]
    cli.main(args + [str(tmp_path / "a")])
    cli.main(args + [str(tmp_path / "b")])
    a, history_a = load_checkpoint(tmp_path / "a" / "model.pt")
    b, history_b = load_checkpoint(tmp_path / "b" / "model.pt")
    assert history_a == history_b
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("bad", [["--model", "gan"], ["--epochs", "0"], ["--lr", "-1"], ["--latent-dim", "two"],
                                 ["--lr-schedule", "linear"]])
def test_bad_arguments_are_refused_by_the_parser(tmp_path, fake_mnist, capsys, bad):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--out", str(tmp_path)] + bad)
    assert info.value.code == 2
    assert bad[0] in capsys.readouterr().err
    assert fake_mnist == []  # refused before any data was loaded


def test_out_is_required(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train"])
    assert "--out" in capsys.readouterr().err


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "vae_lesson", "train", "--help"], capture_output=True, text=True,
                            check=True)
    for option in ("--recipe", "vae-20d-lecture", "--model", "--latent-dim", "--hidden-dim", "--epochs", "--batch-size", "--lr", "--lr-schedule", "--beta",
                   "--seed", "--data", "--out", "model.pt", "history.json", "samples.png"):
        assert option in result.stdout


def test_a_recipe_gives_its_settings_and_options_override_them(tmp_path, fake_mnist, monkeypatch):
    import vae_lesson.recipes as recipes

    seen = []
    real_train = cli.train

    def recording_train(model, *args, **kwargs):
        seen.append((model.config, kwargs))
        return real_train(model, *args, **{**kwargs, "epochs": 1})  # the settings are checked, not the run

    monkeypatch.setattr(cli, "train", recording_train)
    lecture = recipes.RECIPES["vae-20d-lecture"]
    cli.main(["train", "--recipe", "vae-20d-lecture", "--hidden-dim", "8", "--no-progress", "--out", str(tmp_path / "a")])
    cli.main(["train", "--recipe", "vae-20d-lecture", "--hidden-dim", "8", "--lr", "5e-4", "--lr-schedule", "constant",
              "--no-progress", "--out", str(tmp_path / "b")])
    (config_a, kwargs_a), (config_b, kwargs_b) = seen
    assert config_a == {"kind": "vae", "latent_dim": lecture.latent_dim, "hidden_dim": 8}
    assert {k: kwargs_a[k] for k in lecture.train_settings} == lecture.train_settings
    assert kwargs_a["epochs"] == 30 and kwargs_a["batch_size"] == 256 and kwargs_a["lr_schedule"] == "cosine"
    assert kwargs_b["lr"] == 5e-4 and kwargs_b["lr_schedule"] == "constant" and kwargs_b["batch_size"] == 256


def test_an_unknown_recipe_is_refused_with_the_list(tmp_path, fake_mnist, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--recipe", "vae-3d", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "vae-3d" in err and "vae-20d-lecture" in err
    assert fake_mnist == []
