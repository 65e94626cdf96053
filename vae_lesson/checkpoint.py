"""Saving and loading trained models: weights, architecture and training history in one file.

Files are written atomically (atomic.py), so an interrupted save never leaves a half-written
checkpoint, and read with torch.load(weights_only=True), which refuses to run code hidden in a file.
"""

from pathlib import Path

import torch

from .atomic import write_atomically
from .models import build_model

FORMAT_VERSION = 2
# How parameter names changed between formats: {old format: {old prefix: new prefix}}. Format 1
# named the encoders' shared hidden layer `encoder.hidden`; format 2 calls it `encoder_hidden`.
RENAMED_PARAMETERS = {1: {"encoder.hidden.": "encoder_hidden."}}


def describe(config):
    """A model config as a short phrase, e.g. "vae (latent_dim=20, hidden_dim=500)"."""
    return f"{config.get('kind')} (latent_dim={config.get('latent_dim')}, hidden_dim={config.get('hidden_dim')})"


def save_checkpoint(path, model, history=None, *, metadata=None):
    """Write model.config, model.state_dict() and the history (a dict of lists) to `path` atomically.

    metadata: an optional dict of plain values stored beside them (the cache stores what the model
    was trained from); read it back with read_checkpoint. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": {k: list(v) for k, v in (history or {}).items()},
        "metadata": dict(metadata or {}),
    }
    return write_atomically(path, lambda f: torch.save(payload, f))


def upgrade(payload):
    """A payload of an older format, with its parameters renamed as the current format names them."""
    state_dict = dict(payload["state_dict"])
    for version in range(payload["format"], FORMAT_VERSION):
        for old, new in RENAMED_PARAMETERS.get(version, {}).items():
            state_dict = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state_dict.items()}
    return {**payload, "format": FORMAT_VERSION, "state_dict": state_dict, "metadata": payload.get("metadata", {})}


CONFIG_KEYS = ("kind", "latent_dim", "hidden_dim")


def read_checkpoint(path, map_location="cpu"):
    """The checkpoint's contents as a dict: "config", "state_dict", "history", "metadata" (older formats upgraded).

    Every way a file can fail to be a usable checkpoint raises an error that names the cause and the fix.
    """
    path = Path(path)
    if path.is_dir():
        inside = " (it holds model.pt: pass that file)" if (path / "model.pt").is_file() else ""
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file{inside}; a training run's folder holds "
                                f"model.pt, history.json and samples.png: load_checkpoint({str(path / 'model.pt')!r}).")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m vae_lesson train --out DIR`.")
    map_location = "cpu" if map_location is None else map_location
    if torch.device(map_location).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location={map_location!r} but this machine has no CUDA GPU: load {path} with "
                         "map_location='cpu' (the default), then move the model with model.to(device).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable vae_lesson checkpoint ({type(exc).__name__}: {exc}). "
                         "Delete it and train again.") from exc
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ValueError(f"{path} holds a bare state_dict (saved with torch.save(model.state_dict())), not a "
                         "vae_lesson checkpoint: build the model with the sizes it was trained with and call "
                         f"model.load_state_dict(torch.load({str(path)!r}, weights_only=True)); save with "
                         "vae_lesson.save_checkpoint to keep the sizes in the file.")
    version = payload.get("format") if isinstance(payload, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer vae_lesson (checkpoint format {version}; this one reads "
                         f"formats 1-{FORMAT_VERSION}): update vae_lesson (git pull, or pip install -U) to load it.")
    if version not in range(1, FORMAT_VERSION + 1) or "config" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path} is not a vae_lesson checkpoint (no format number 1-{FORMAT_VERSION} with a config "
                         "and weights); delete it and train again.")
    missing = [key for key in CONFIG_KEYS if key not in payload["config"]]
    if missing:
        raise ValueError(f"the config stored in {path} lacks {', '.join(map(repr, missing))} (it has "
                         f"{sorted(payload['config'])}), so the model cannot be rebuilt: the file was edited or "
                         "written by other code. Delete it and train again.")
    return upgrade(payload) if version < FORMAT_VERSION else payload


def load_weights(model, payload, path):
    """model.load_state_dict(payload["state_dict"]), with an error that says the file is inconsistent."""
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ValueError(f"the weights in {path} do not fit the {describe(payload['config'])} its config describes "
                         f"({detail}): the file is corrupt or was edited. Delete it and train again.") from exc
    model.eval()
    return model


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint; returns (model, history).

    With model=None the model is rebuilt from the stored config. With a model, its architecture
    must match the checkpoint's, or a ValueError names both. map_location: where the weights go
    ("cpu", the default, also loads a checkpoint saved on a GPU).
    """
    payload = read_checkpoint(path, map_location)
    config = payload["config"]
    if model is None:
        model = build_model(config)
    elif dict(model.config) != config:
        raise ValueError(
            f"{path} holds a {describe(config)} but the model given is a {describe(model.config)}; "
            "build the model with the checkpoint's settings, or pass model=None to rebuild it automatically."
        )
    return load_weights(model, payload, path), payload["history"]
