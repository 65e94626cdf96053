import os

import pytest
import torch

from vae_lesson import VAE, Autoencoder, load_checkpoint, save_checkpoint

HISTORY = {"epoch": [1, 2], "train_loss": [210.5, 180.25], "test_loss": [200.0, 175.125]}


def tiny(cls=VAE, latent_dim=2, hidden_dim=8, seed=0):
    torch.manual_seed(seed)
    return cls(latent_dim=latent_dim, hidden_dim=hidden_dim)


def assert_same_weights(a, b):
    assert a.state_dict().keys() == b.state_dict().keys()
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


@pytest.mark.parametrize("cls", [VAE, Autoencoder])
def test_round_trip_rebuilds_the_model_and_history(tmp_path, cls):
    model = tiny(cls)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, HISTORY)
    assert path.is_file()
    loaded, history = load_checkpoint(path)
    assert type(loaded) is cls and loaded.config == model.config
    assert_same_weights(loaded, model)
    assert history == HISTORY
    assert not loaded.training


def test_loading_into_a_given_model(tmp_path):
    model = tiny(seed=0)
    save_checkpoint(tmp_path / "m.pt", model)
    target = tiny(seed=1)
    loaded, history = load_checkpoint(tmp_path / "m.pt", model=target)
    assert loaded is target
    assert_same_weights(target, model)
    assert history == {}


def test_only_the_checkpoint_appears_in_the_folder(tmp_path):
    save_checkpoint(tmp_path / "m.pt", tiny())
    assert os.listdir(tmp_path) == ["m.pt"]


def failing_save(obj, f, *args, **kwargs):
    f.write(b"half a checkpoint")
    raise OSError("disk full")


def test_a_failed_save_leaves_no_file_and_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "m.pt", tiny())
    assert os.listdir(tmp_path) == []


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old = tiny(seed=0)
    save_checkpoint(tmp_path / "m.pt", old, HISTORY)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "m.pt", tiny(seed=1))
    monkeypatch.undo()
    loaded, history = load_checkpoint(tmp_path / "m.pt")
    assert_same_weights(loaded, old)
    assert history == HISTORY
    assert os.listdir(tmp_path) == ["m.pt"]


@pytest.mark.parametrize("other", [dict(cls=VAE, latent_dim=3), dict(cls=VAE, hidden_dim=9),
                                   dict(cls=Autoencoder)])
def test_another_architecture_is_refused_naming_both(tmp_path, other):
    save_checkpoint(tmp_path / "m.pt", tiny(VAE, latent_dim=2, hidden_dim=8))
    model = tiny(**other)
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "m.pt", model=model)
    message = str(info.value)
    assert "vae (latent_dim=2, hidden_dim=8)" in message
    c = model.config
    assert f"{c['kind']} (latent_dim={c['latent_dim']}, hidden_dim={c['hidden_dim']})" in message


class RunsCodeWhenUnpickled:
    """A pickle payload that, if unpickled with weights_only=False, creates a folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_files_with_arbitrary_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "code-ran"
    model = tiny()
    payload = {"format": 1, "config": model.config, "state_dict": model.state_dict(), "history": {},
               "extra": RunsCodeWhenUnpickled(marker)}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable vae_lesson checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    # The file is a real threat: a plain torch.load would have run the code.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_missing_garbage_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable vae_lesson checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "foreign.pt")  # readable, but not ours
    with pytest.raises(ValueError, match="is not a vae_lesson checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_checkpoint_gets_the_usual_permissions_not_owner_only(tmp_path):
    # tempfile.mkstemp creates 0600 files; a checkpoint in a shared cache must follow the umask.
    old_umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", tiny())
    finally:
        os.umask(old_umask)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644


def test_a_format_1_checkpoint_with_the_old_layer_name_still_loads(tmp_path):
    """Format 1 called the encoders' shared layer `encoder.hidden` (a module named Encoder); it is now
    `encoder_hidden`. An old file is upgraded on loading, weights and all."""
    model = tiny(VAE)
    old_names = {k.replace("encoder_hidden.", "encoder.hidden."): v for k, v in model.state_dict().items()}
    assert "encoder.hidden.weight" in old_names
    torch.save({"format": 1, "config": model.config, "state_dict": old_names, "history": HISTORY}, tmp_path / "old.pt")
    loaded, history = load_checkpoint(tmp_path / "old.pt")
    assert_same_weights(loaded, model)
    assert history == HISTORY


def test_metadata_is_stored_and_read_back(tmp_path):
    from vae_lesson.checkpoint import read_checkpoint

    save_checkpoint(tmp_path / "m.pt", tiny(), HISTORY, metadata={"training_version": 1, "train_data": "ab12"})
    assert read_checkpoint(tmp_path / "m.pt")["metadata"] == {"training_version": 1, "train_data": "ab12"}
    save_checkpoint(tmp_path / "n.pt", tiny())
    assert read_checkpoint(tmp_path / "n.pt")["metadata"] == {}


# --- checkpoints say the real cause -----------------------------------------------------------------


def test_a_run_folder_passed_for_a_file_names_model_pt(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "model.pt", tiny())
    with pytest.raises(IsADirectoryError) as err:
        load_checkpoint(run)
    message = str(err.value)
    assert f"{run} is a folder, not a checkpoint file" in message and "it holds model.pt: pass that file" in message
    assert str(run / "model.pt") in message


def test_a_config_with_a_key_missing_names_the_key(tmp_path):
    model = tiny()
    config = {k: v for k, v in model.config.items() if k != "hidden_dim"}
    torch.save({"format": 2, "config": config, "state_dict": model.state_dict(), "history": {}}, tmp_path / "m.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "m.pt")
    message = str(err.value)
    assert "lacks 'hidden_dim'" in message and "Delete it and train again" in message


def test_a_bare_state_dict_says_how_to_load_it(tmp_path):
    torch.save(tiny().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "bare.pt", model=tiny())
    message = str(err.value)
    assert "bare state_dict" in message and "model.load_state_dict(torch.load(" in message
    assert "delete" not in message.lower()  # the weights are fine: nothing to throw away


def test_a_newer_format_asks_for_an_update_not_a_deletion(tmp_path):
    model = tiny()
    torch.save({"format": 99, "config": model.config, "state_dict": model.state_dict()}, tmp_path / "new.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "new.pt")
    message = str(err.value)
    assert "newer vae_lesson (checkpoint format 99" in message and "update vae_lesson" in message
    assert "delete" not in message.lower()


def test_weights_that_do_not_fit_their_config_say_the_file_is_inconsistent(tmp_path):
    model = tiny(latent_dim=2)
    config = dict(model.config, latent_dim=3)
    torch.save({"format": 2, "config": config, "state_dict": model.state_dict(), "history": {}}, tmp_path / "m.pt")
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "m.pt")
    message = str(err.value)
    assert "do not fit the vae (latent_dim=3, hidden_dim=8) its config describes" in message
    assert "size mismatch" in message and "Delete it and train again" in message


def test_a_checkpoint_saved_on_a_gpu_loads_on_a_cpu(tmp_path, monkeypatch):
    """torch.save records each tensor's device; one tagged cuda:0 (as a GPU run writes it) loads on
    the CPU by default, and asking for CUDA where there is none says what to do instead."""
    model = tiny()
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(tmp_path / "gpu.pt", model, HISTORY)
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
            torch.load(tmp_path / "gpu.pt", weights_only=True)
        with pytest.raises(ValueError) as err:
            load_checkpoint(tmp_path / "gpu.pt", map_location="cuda")
        assert "no CUDA GPU" in str(err.value) and "map_location='cpu'" in str(err.value)
    for location in ("cpu", None):
        loaded, history = load_checkpoint(tmp_path / "gpu.pt", map_location=location)
        assert_same_weights(loaded, model)
        assert history == HISTORY


def test_a_temporary_file_left_by_a_killed_save_is_removed_by_the_next_save(tmp_path):
    left_over = tmp_path / ".m.pt.999999999.0123abcd.tmp"  # written by a process that no longer exists
    left_over.write_bytes(b"half a checkpoint")
    os.utime(left_over, (0, 0))
    in_progress = tmp_path / f".m.pt.{os.getpid()}.4567cdef.tmp"  # another save of this process, still running
    in_progress.write_bytes(b"being written")
    os.utime(in_progress, (0, 0))
    save_checkpoint(tmp_path / "m.pt", tiny())
    assert sorted(os.listdir(tmp_path)) == sorted(["m.pt", in_progress.name])
