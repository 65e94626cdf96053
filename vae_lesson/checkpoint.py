"""Saving and loading trained models: weights, architecture and training history in one file.

Files are written atomically (to a temporary file, then renamed), so an interrupted save never
leaves a half-written checkpoint, and read with torch.load(weights_only=True), which refuses
to run code hidden in a file.
"""

import os
import uuid
from pathlib import Path

import torch

from .models import build_model

FORMAT_VERSION = 1


def _describe(config):
    return f"{config.get('kind')} (latent_dim={config.get('latent_dim')}, hidden_dim={config.get('hidden_dim')})"


def save_checkpoint(path, model, history=None):
    """Write model.config, model.state_dict() and the history (a dict of lists) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": {k: list(v) for k, v in (history or {}).items()},
    }
    # A unique temporary name opened with "xb" (not tempfile.mkstemp, whose files are owner-only
    # 0600): the checkpoint gets the usual umask permissions, so others can read a shared cache.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, model=None, map_location="cpu"):
    """Load a checkpoint; returns (model, history).

    With model=None the model is rebuilt from the stored config. With a model, its architecture
    must match the checkpoint's, or a ValueError names both.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m vae_lesson train --out DIR`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable vae_lesson checkpoint ({type(exc).__name__}: {exc}). "
                         "Delete it and train again.") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "config" not in payload:
        raise ValueError(f"{path} is not a vae_lesson checkpoint (format {FORMAT_VERSION}); delete it and train again.")
    config = payload["config"]
    if model is None:
        model = build_model(config)
    elif dict(model.config) != config:
        raise ValueError(
            f"{path} holds a {_describe(config)} but the model given is a {_describe(model.config)}; "
            "build the model with the checkpoint's settings, or pass model=None to rebuild it automatically."
        )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["history"]
