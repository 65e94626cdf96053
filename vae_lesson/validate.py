"""Arguments checked at the door: every public function a notebook calls checks what it is given
before any work, and a mistake gets a ValueError or TypeError that names the argument, what it got,
and what to do. (A shape error from deep inside a matrix product, minutes into training, does not.)
"""

import numbers

import math

import torch
from torch import nn

IMAGE_SHAPES = "(N, 1, 28, 28) or (N, 784)"


def whole_number(value, name, minimum=1):
    """`value` as an int, if it is a whole number >= minimum (2 and 2.0 both are)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}); "
                        f"pass e.g. {name}={max(minimum, 2)}.")
    wanted = {0: "zero or a positive integer", 1: "a positive integer"}.get(minimum,
                                                                           f"at least {minimum} (a whole number)")
    if value != value or abs(value) == float("inf") or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be {wanted}, got {value!r}.")
    return int(value)


def number(value, name, *, minimum=None, above=None, why=""):
    """`value` as a float, if it is a finite real number >= minimum (or > above); `why` ends the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value or abs(value) == float("inf"):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, got {value:g}{why}.")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be greater than {above:g}, got {value:g}{why}.")
    return float(value)


def learning_rate(value, name="lr"):
    return number(value, name, above=0, why=": with lr=0 Adam takes no step and nothing is learned; the course "
                                           "uses 1e-3 (2e-3 with the cosine schedule)")


def kl_weight(value, name="beta"):
    return number(value, name, minimum=0, why=": beta weighs the KL term, and a negative weight would reward "
                                              "codes far from the prior; use 1 for the ELBO")


def parameter_dtype(model):
    """The dtype of a module's weights (float32 unless it was converted); None for a module without any."""
    weight = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return None if weight is None else weight.dtype


def model(value, name="model", kind=None):
    """A vae_lesson model (anything with latent_dim and decode), or a VAE when kind="vae"."""
    if isinstance(value, tuple) and value and isinstance(value[0], nn.Module):
        raise TypeError(f"{name} is a tuple ({type(value[0]).__name__}, ...), not a model: vl.trained_model returns "
                        f"(model, history); unpack it: {name}, history = vl.trained_model(...).")
    if not isinstance(value, nn.Module) or not hasattr(value, "latent_dim") or not hasattr(value, "decode"):
        raise TypeError(f"{name} must be a vae_lesson model (vl.VAE or vl.Autoencoder), got {type(value).__name__}.")
    if kind is not None and getattr(value, "kind", None) != kind:
        raise TypeError(f"{name} must be a {kind.upper() if kind == 'vae' else kind}, got {type(value).__name__}.")
    return value


def image_tensor(value, name, dtype=None):
    """Refuse what is not a float tensor of pixels (arrays, integer pixels 0-255), or one of another float
    dtype than `dtype` (the model's: float64 images for a float32 model)."""
    if not isinstance(value, torch.Tensor):
        hint = (f"; convert it with torch.from_numpy({name}).float()" if type(value).__module__ == "numpy"
                else "; load images with vl.load_mnist, which returns (images, labels)")
        raise TypeError(f"{name} must be a torch tensor of images, got {type(value).__name__}{hint}.")
    if not value.is_floating_point():
        raise TypeError(f"{name} holds {str(value.dtype).removeprefix('torch.')} values (raw pixels 0-255?); the "
                        f"models take float32 pixels in [0, 1]: pass {name}.float() / 255.")
    if dtype is not None and value.dtype != dtype:
        method = {torch.float32: "float", torch.float64: "double"}.get(dtype, f"to({dtype})")
        method = f"{method}()" if method in ("float", "double") else method
        raise TypeError(f"{name} is {str(value.dtype).removeprefix('torch.')}, but the model's weights are "
                        f"{str(dtype).removeprefix('torch.')}: pass {name}.{method}.")
    return value


def pixel_values(value, name):
    """Refuse NaN, inf, and pixels outside [0, 1]: the data's fault, so said before training blames the rate."""
    if not value.numel():
        return value
    # aminmax reads the pixels once without a full-size temporary (isfinite would make one as large as
    # the data set), and a NaN or an infinity shows in its result: count them only then.
    low, high = (bound.item() for bound in torch.aminmax(value))
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite pixel value(s): the data is broken, not the model or the "
                         "learning rate; find where they came from (a division by zero in preprocessing?).")
    if low < 0:
        raise ValueError(f"{name} has pixels from {low:.3g} to {high:.3g}, below 0: normalised with a mean and std "
                         "(transforms.Normalize)? The Bernoulli decoder needs pixels in [0, 1], as vl.load_mnist "
                         "returns them: leave out the normalisation.")
    if high > 1:
        raise ValueError(f"{name} has pixels up to {high:.3g}, above 1: the Bernoulli decoder needs pixels in "
                         f"[0, 1]; for 0-255 pixels pass {name} / 255.")
    return value


def images(value, name="images", *, dtype=None):
    """A float tensor of images (N, 1, 28, 28) or (N, 784) with N >= 1, pixels in [0, 1], of `dtype` if given."""
    image_tensor(value, name, dtype)
    shape = tuple(value.shape)
    if not ((len(shape) == 4 and shape[1:] == (1, 28, 28)) or (len(shape) == 2 and shape[1] == 784)):
        hint = {3: f"; add the channel dimension: {name}.unsqueeze(1)" if shape[1:] == (28, 28) else "",
                2: f"; one image? pass {name}.reshape(1, 1, 28, 28)" if shape == (28, 28) else ""}.get(len(shape), "")
        raise ValueError(f"{name} must hold images of shape {IMAGE_SHAPES}, got {shape}{hint}.")
    if shape[0] == 0:
        raise ValueError(f"{name} holds no images (shape {shape}); pass at least one.")
    return pixel_values(value, name)


def images_or_pair(data, name, dtype=None):
    """The images of an images tensor or of an (images, labels) pair, as vl.load_mnist returns it."""
    value = data[0] if isinstance(data, (tuple, list)) and len(data) == 2 else data
    if isinstance(data, (tuple, list)) and len(data) != 2:
        raise TypeError(f"{name} must be an images tensor or an (images, labels) pair, got a "
                        f"{type(data).__name__} of {len(data)} items.")
    return images(value, name, dtype=dtype)


def one_image(value, name, dtype=None):
    """One image: (1, 28, 28), (1, 1, 28, 28), (784,) or (1, 784) -> (1, 784)."""
    image_tensor(value, name, dtype)
    if value.numel() != 784:
        n = value.shape[0] if value.dim() in (2, 4) and value.numel() % 784 == 0 else None
        hint = f"; it holds {n} images: pick one, e.g. {name}[0]" if n else ""
        raise ValueError(f"{name} must be one image, (1, 28, 28) or (784,), got shape {tuple(value.shape)}{hint}.")
    return pixel_values(value.reshape(1, 784), name)


def labels(value, name, n):
    """Digit labels (n,) of an integer dtype with values 0-9."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of digits (n,), got {type(value).__name__}.")
    if value.dim() == 2 and value.shape == (n, 10):
        raise ValueError(f"{name} are one-hot vectors, shape {tuple(value.shape)}; pass the digits themselves: "
                         f"{name}.argmax(dim=1).")
    if value.dim() != 1 or value.shape[0] != n:
        raise ValueError(f"{name} must hold one label per image (a digit each): shape ({n},), "
                         f"got {tuple(value.shape)}.")
    if value.is_floating_point() or value.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer digits, got {str(value.dtype).removeprefix('torch.')}; "
                        f"pass {name}.long().")
    if n and (value.min() < 0 or value.max() > 9):
        raise ValueError(f"{name} must be digits 0-9, got values from {int(value.min())} to {int(value.max())}.")
    return value


def latents(value, name="latents", *, min_points=2, dim=None):
    """Latent codes (N, D) as a float tensor, N >= min_points, D == dim if given."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        got = type(value).__name__ if not isinstance(value, torch.Tensor) else str(value.dtype)
        raise TypeError(f"{name} must be a float tensor of codes (N, latent_dim), got {got}; encode images with "
                        "vl.encode_dataset(model, images).")
    if value.dim() != 2 or value.shape[0] < min_points or (dim is not None and value.shape[1] != dim):
        wanted = f"(N, {dim})" if dim is not None else "(N, latent_dim)"
        raise ValueError(f"{name} must have shape {wanted} with N >= {min_points}, got {tuple(value.shape)}; "
                         "encode images with vl.encode_dataset(model, images).")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} holds NaN or infinite values: the model that encoded them is broken "
                         "(did its training diverge?).")
    return value
