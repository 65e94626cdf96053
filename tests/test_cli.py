import json
import os
import subprocess
import sys
from pathlib import Path

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
    for option in ("--recipe", "vae-20d-lecture",
                   "--model", "--latent-dim", "--hidden-dim", "--epochs", "--batch-size", "--lr", "--lr-schedule", "--beta",
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
    cli.main(["train", "--recipe", "vae-20d-lecture", "--hidden-dim", "8", "--no-progress",
              "--out", str(tmp_path / "a")])
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


# --- finished work is never thrown away -------------------------------------------------------------

TINY = ["train", "--latent-dim", "2", "--hidden-dim", "4", "--epochs", "1", "--no-progress", "--out"]


@pytest.fixture
def train_calls(monkeypatch):
    calls = []
    real_train = cli.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(cli, "train", counting_train)
    return calls


def refused(capsys, argv):
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path, fake_mnist, train_calls, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    code, err = refused(capsys, TINY + [str(out)])
    assert code == 2 and f"--out {out} is a file; pass a folder" in err
    assert train_calls == [] and fake_mnist == [] and out.read_text() == "keep me"


def test_an_out_that_cannot_be_written_is_refused_before_training(tmp_path, fake_mnist, train_calls, capsys,
                                                                  monkeypatch):
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # as in a read-only shared folder (root ignores chmod, so simulated)
        if self.parent == tmp_path / "shared":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    (tmp_path / "shared").mkdir()
    monkeypatch.setattr(Path, "mkdir", read_only)
    code, err = refused(capsys, TINY + [str(tmp_path / "shared" / "run")])
    assert code == 2 and "cannot write the run to --out" in err and "Permission denied" in err
    assert "pass a folder you can write to" in err
    assert train_calls == [] and fake_mnist == []


def test_an_out_holding_other_files_is_refused_and_left_alone(tmp_path, fake_mnist, train_calls, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    code, err = refused(capsys, TINY + [str(tmp_path)])
    assert code == 2 and "holds other files (thesis.tex)" in err and "pass a new or empty folder" in err
    assert train_calls == [] and (tmp_path / "thesis.tex").read_text() == "years of work"


def run_files(folder):
    return {name: (folder / name).read_bytes() for name in cli.RUN_FILES}


def test_a_run_interrupted_while_writing_leaves_the_previous_run_whole(tmp_path, fake_mnist, monkeypatch):
    out = tmp_path / "run"
    cli.main(TINY + [str(out)])
    before = run_files(out)

    def interrupted(*args, **kwargs):  # model.pt and history.json of the new run are written by now
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_samples_figure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(TINY[:-1] + ["--seed", "7", "--out", str(out)])
    assert run_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left


def test_a_second_run_replaces_the_folder_as_one_unit(tmp_path, fake_mnist):
    out = tmp_path / "run"
    cli.main(TINY + [str(out)])
    first = run_files(out)
    cli.main(TINY[:-1] + ["--seed", "7", "--out", str(out)])
    second = run_files(out)
    assert all(first[name] != second[name] for name in ("model.pt", "history.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_swap_interrupted_between_its_two_renames_is_undone(tmp_path, fake_mnist):
    from vae_lesson.atomic import previous_path

    out = tmp_path / "run"
    cli.main(TINY + [str(out)])
    before = run_files(out)
    out.rename(previous_path(out))  # the old run moved aside, the new one not yet in: then the power went
    cli.main(TINY[:-1] + ["--out", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert run_files(out)["model.pt"] == before["model.pt"]  # same seed: the same model, now in place


def test_stale_temporary_folders_of_killed_runs_are_cleaned_up(tmp_path, fake_mnist):
    out = tmp_path / "run"
    dead = tmp_path / ".run.999999999.0123abcd.tmp"  # no such process
    running = tmp_path / f".run.{os.getpid()}.4567cdef.tmp"  # a writer still at work
    fresh_dead = tmp_path / ".run.999999998.89abcdef.tmp"  # too recent to be sure
    for folder in (dead, running, fresh_dead):
        folder.mkdir()
        (folder / "model.pt").write_bytes(b"half")
    for folder in (dead, running):
        os.utime(folder, (0, 0))
    cli.main(TINY + [str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", running.name, fresh_dead.name])


def test_the_remedies_for_collapse_are_options(tmp_path, fake_mnist, monkeypatch):
    seen = []
    real_train = cli.train

    def recording_train(model, *args, **kwargs):
        seen.append(kwargs)
        return real_train(model, *args, **{**kwargs, "epochs": 1})

    monkeypatch.setattr(cli, "train", recording_train)
    cli.main(["train", "--recipe", "vae-20d-collapse-free-bits", "--hidden-dim", "8", "--no-progress",
              "--out", str(tmp_path / "a")])
    cli.main(["train", "--recipe", "vae-20d", "--hidden-dim", "8", "--warmup-epochs", "3", "--free-bits", "0.25",
              "--no-progress", "--out", str(tmp_path / "b")])
    assert (seen[0]["beta"], seen[0]["free_bits"], seen[0]["warmup_epochs"]) == (6.0, 0.5, 0)
    assert (seen[1]["beta"], seen[1]["free_bits"], seen[1]["warmup_epochs"]) == (1.0, 0.25, 3)
