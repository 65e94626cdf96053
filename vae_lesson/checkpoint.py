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


def read_checkpoint(path, map_location="cpu"):
    """The checkpoint's contents as a dict: "config", "state_dict", "history", "metadata" (older formats upgraded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m vae_lesson train --out DIR`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable vae_lesson checkpoint ({type(exc).__name__}: {exc}). "
                         "Delete it and train again.") from exc
    if (not isinstance(payload, dict) or payload.get("format") not in range(1, FORMAT_VERSION + 1)
            or "config" not in payload):
        raise ValueError(f"{path} is not a vae_lesson checkpoint (format {FORMAT_VERSION}); delete it and train again.")
    return upgrade(payload) if payload["format"] < FORMAT_VERSION else payload


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint; returns (model, history).

    With model=None the model is rebuilt from the stored config. With a model, its architecture
    must match the checkpoint's, or a ValueError names both.
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
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["history"]
