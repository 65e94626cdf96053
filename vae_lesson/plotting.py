"""Figures for the course: digits, latent spaces and training curves, drawn the same way everywhere.

Every function draws into the `ax` it is given, or makes a new figure with pyplot when `ax` is
None (so a notebook shows it inline), and returns what it drew on. Nothing here picks a
backend: tests and widgets render with Agg, notebooks with the inline backend.

One colour per digit (DIGIT_COLORS) is used in every figure of the course, so a student who
learned that 7 is grey in lesson 1 finds it grey in lesson 7.
"""

import math

import matplotlib
import numpy as np
import torch
from matplotlib.lines import Line2D

# matplotlib's tab10 palette: ten colours chosen to be told apart, one per digit 0-9.
DIGIT_COLORS = tuple(matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors)
IMAGE_SIDE = 28


def _new_axes(figsize):
    import matplotlib.pyplot as plt  # imported late so importing this module never picks a backend

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")  # keeps labels and legends inside
    return ax


def _as_numpy(x, name):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:
        raise ValueError(f"{name} must be a tensor or an array, got {type(x).__name__}.") from None


def _images_to_numpy(images, name="images"):
    """(N, 1, 28, 28), (N, 28, 28) or (N, 784) with values in [0, 1] -> numpy (N, 28, 28)."""
    arr = _as_numpy(images, name)
    n = arr.shape[0] if arr.ndim else 0
    if arr.ndim not in (2, 3, 4) or arr.size != n * IMAGE_SIDE * IMAGE_SIDE or n == 0:
        raise ValueError(
            f"{name} must have shape (N, 1, 28, 28), (N, 28, 28) or (N, 784) with N >= 1, "
            f"got {tuple(arr.shape)}; for a single image add a batch dimension with image.unsqueeze(0)."
        )
    arr = arr.reshape(n, IMAGE_SIDE, IMAGE_SIDE).astype(np.float32)
    # Logits passed by mistake would be clipped silently by imshow: say so instead.
    if arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise ValueError(
            f"{name} must hold pixel values in [0, 1], got values in [{arr.min():.3g}, {arr.max():.3g}]; "
            "decode with model.decode(z) (probabilities), or apply torch.sigmoid to logits."
        )
    return arr


def _latents_to_numpy(latents, name="latents"):
    arr = _as_numpy(latents, name)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, 2): one 2-D latent point per image, got {tuple(arr.shape)}. "
            "Scatter plots need a 2-D latent space (latent_dim=2); for more dimensions use plot_marginals."
        )
    return arr.astype(np.float64)


def _labels_to_numpy(labels, n):
    arr = _as_numpy(labels, "labels")
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one digit per latent point, got {tuple(arr.shape)}.")
    if n and (arr.min() < 0 or arr.max() > 9 or not np.all(arr == np.round(arr))):
        raise ValueError("labels must be integer digits 0-9.")
    return arr.astype(np.int64)


def tile_images(images, ncol, padding=2, pad_value=0.5):
    """Tile images (N, 1, 28, 28) in [0, 1] into one grey array of shape (rows * (28 + p) + p, ncol * (28 + p) + p).

    Image i sits in row i // ncol, column i % ncol. Empty cells of the last row keep pad_value.
    """
    arr = _images_to_numpy(images)
    if ncol < 1:
        raise ValueError(f"ncol must be a positive integer, got {ncol}.")
    nrows = math.ceil(len(arr) / ncol)
    cell = IMAGE_SIDE + padding
    grid = np.full((nrows * cell + padding, ncol * cell + padding), pad_value, dtype=np.float32)
    for i, image in enumerate(arr):
        top, left = padding + (i // ncol) * cell, padding + (i % ncol) * cell
        grid[top:top + IMAGE_SIDE, left:left + IMAGE_SIDE] = image
    return grid


def show_images(images, nrow=8, title=None, ax=None):
    """Show images (N, 1, 28, 28) in [0, 1] as one grey grid with `nrow` images per row
    (torchvision's make_grid convention). Returns the Axes."""
    if nrow < 1:
        raise ValueError(f"nrow (images per row) must be a positive integer, got {nrow}.")
    arr = _images_to_numpy(images)
    ncol = min(nrow, len(arr))
    grid = tile_images(arr, ncol)
    if ax is None:
        rows = grid.shape[0] / grid.shape[1]
        ax = _new_axes(figsize=(min(1.0 * ncol, 12), min(1.0 * ncol, 12) * rows + (0.4 if title else 0)))
    # vmin/vmax fixed so a faint digit looks faint instead of being stretched to full contrast.
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_reconstructions(originals, reconstructions, n=10, title="Originals (top) and reconstructions (bottom)"):
    """Two rows: the first n originals and their reconstructions, both (N, 1, 28, 28) in [0, 1].
    Returns the Figure."""
    import matplotlib.pyplot as plt

    originals = _images_to_numpy(originals, "originals")
    reconstructions = _images_to_numpy(reconstructions, "reconstructions")
    if len(originals) != len(reconstructions):
        raise ValueError(
            f"got {len(originals)} originals but {len(reconstructions)} reconstructions; pass one "
            "reconstruction per original, e.g. model.decode(model.encode(x)) for an autoencoder."
        )
    n = min(n, len(originals))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(n, 12), 2.6 * min(n, 12) / n), layout="constrained")
    show_images(originals[:n], nrow=n, ax=top)
    show_images(reconstructions[:n], nrow=n, ax=bottom)
    top.set_ylabel("original")
    bottom.set_ylabel("reconstruction")
    fig.suptitle(title)
    return fig


def digit_legend(ax, **kwargs):
    """Add the course's digit legend (0-9 in DIGIT_COLORS) to `ax`, outside on the right. Returns the Legend."""
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=6, color=color, label=str(digit))
        for digit, color in enumerate(DIGIT_COLORS)
    ]
    options = {"title": "digit", "loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "frameon": False}
    options.update(kwargs)
    return ax.legend(handles=handles, **options)


def plot_latent_scatter(latents, labels, ax=None, title="Latent space", max_points=5000, lim=None, seed=0):
    """Scatter 2-D latent points (N, 2) coloured by digit label (N,), with the digit legend.

    At most `max_points` points are drawn (a fixed random subset, from `seed`). `lim` sets both
    axes to (-lim, lim), so two latent spaces can be compared on the same scale. Returns the Axes.
    """
    z = _latents_to_numpy(latents)
    y = _labels_to_numpy(labels, len(z))
    if max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points}.")
    # A random order (not sorted by digit) so no digit is always painted on top of the others.
    order = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed)).numpy()[:max_points]
    if ax is None:
        ax = _new_axes(figsize=(5.5, 4.5))
    colors = np.array(DIGIT_COLORS)[y[order]]
    ax.scatter(z[order, 0], z[order, 1], c=colors, s=4, alpha=0.7, linewidths=0)
    ax.set_aspect("equal", adjustable="datalim" if lim is None else "box")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    digit_legend(ax)
    return ax


def plot_latent_ellipses(mu, logvar, labels, ax=None, n_sigma=2.0, title="Each code is a Gaussian", lim=None):
    """Draw each image's q(z|x) = N(mu, diag(sigma^2)) in a 2-D latent space: mu as a dot, and its n_sigma ellipse.

    mu, logvar: (N, 2) from a VAE's encoder; labels: (N,) digits for the colours. The ellipse is
    {z : sum_j ((z_j - mu_j) / sigma_j)^2 = n_sigma^2}, axis-aligned with half-axes n_sigma * sigma_j,
    sigma = exp(logvar / 2); in two dimensions it holds 1 - exp(-n_sigma^2 / 2) of the Gaussian's
    mass (86% for n_sigma = 2). `lim` sets both axes to (-lim, lim). Returns the Axes.
    """
    from matplotlib.patches import Ellipse

    centres = _latents_to_numpy(mu, "mu")
    log_variances = _latents_to_numpy(logvar, "logvar")
    if log_variances.shape != centres.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {centres.shape} and {log_variances.shape}.")
    y = _labels_to_numpy(labels, len(centres))
    if not n_sigma > 0:
        raise ValueError(f"n_sigma must be positive, got {n_sigma}.")
    sigma = np.exp(0.5 * log_variances)
    if ax is None:
        ax = _new_axes(figsize=(5.5, 4.5))
    colors = np.array(DIGIT_COLORS)[y]
    for centre, (s1, s2), color in zip(centres, sigma, colors):
        ax.add_patch(Ellipse(tuple(centre), width=2 * n_sigma * s1, height=2 * n_sigma * s2,
                             facecolor=color, edgecolor=color, alpha=0.25, linewidth=0.8))
    ax.scatter(centres[:, 0], centres[:, 1], c=colors, s=6, linewidths=0)
    ax.set_aspect("equal", adjustable="datalim" if lim is None else "box")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    else:
        ax.autoscale_view()
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    digit_legend(ax)
    return ax


def plot_history(history, keys=("train_loss", "test_loss"), ax=None, title="Training curves"):
    """Plot per-epoch values from a training History (a dict of equal-length lists) against the epoch.

    keys: which entries to draw, e.g. ("train_reconstruction", "train_kl"). Keys absent from the
    history are an error, so a typo never yields a silently empty plot. Returns the Axes.
    """
    if isinstance(keys, str) or not keys:
        raise ValueError(f"keys must be a non-empty list of history entries, e.g. ('train_loss',), got {keys!r}.")
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"history has no {missing}; it has {sorted(history)}.")
    lengths = {k: len(history[k]) for k in keys}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the history's entries have different lengths: {lengths}.")
    n_epochs = lengths[keys[0]]
    epochs = list(history["epoch"]) if "epoch" in history else list(range(1, n_epochs + 1))
    if ax is None:
        ax = _new_axes(figsize=(5.5, 3.5))
    for key in keys:
        ax.plot(epochs, list(history[key]), marker="o", markersize=3, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.set_title(title)
    ax.legend()
    return ax


def _grid_values(coords, n):
    """Grid coordinates -> (z1 values left to right, z2 values top to bottom), each (n,)."""
    c = _as_numpy(coords, "coords").astype(np.float64)
    if c.ndim == 0:  # an extent: a uniform grid on [-extent, extent]
        z1 = np.linspace(-float(c), float(c), n)
    elif c.shape == (n,):
        z1 = c
    elif c.shape == (n * n, 2):  # one point per image, row-major like the images
        z1, z2 = c[:n, 0], c[::n, 1]
        if not (np.allclose(c[:, 0], np.tile(z1, n)) and np.allclose(c[:, 1], np.repeat(z2, n))):
            raise ValueError("coords (n*n, 2) must list the grid row by row, like the images.")
        return z1, z2
    else:
        raise ValueError(
            f"coords must be an extent (a number), the n={n} grid values (n,), or the n*n grid points "
            f"(n*n, 2), got shape {c.shape}."
        )
    return z1, z1[::-1]  # rows run from high z2 (top) to low z2 (bottom), as on a plot's y axis


def plot_latent_grid(images, coords, ax=None, title="Decoded latent grid", max_ticks=7):
    """Kingma & Welling's manifold figure: n*n decoded images (n*n, 1, 28, 28) laid out at their latent points.

    Images are row-major; rows run from high z2 (top) to low z2, columns from low z1 to high z1.
    coords: the grid's values, as an extent e (grid on [-e, e]), the n values (n,), or the n*n
    points (n*n, 2). Tick labels give z1 and z2 at the centres of the images. Returns the Axes.
    """
    images = _images_to_numpy(images)
    n = math.isqrt(len(images))
    if n * n != len(images):
        raise ValueError(f"a latent grid needs n*n images for some n >= 1, got {len(images)}.")
    z1, z2 = _grid_values(coords, n)
    grid = tile_images(images, n, padding=0)
    if ax is None:
        ax = _new_axes(figsize=(6.5, 6.5))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))
    centres = ticks * IMAGE_SIDE + (IMAGE_SIDE - 1) / 2
    # round first so a float-error value such as -1e-17 is labelled 0, not -1e-17
    ax.set_xticks(centres, [f"{round(z1[i], 3) + 0.0:.2g}" for i in ticks])
    ax.set_yticks(centres, [f"{round(z2[i], 3) + 0.0:.2g}" for i in ticks])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return ax


def plot_marginals(latents, ax=None, bins=50, title="Latent marginals against the prior N(0, 1)", max_dims=4):
    """Histogram (as a density) of each latent coordinate of latents (N, D), over the N(0, 1) density.

    Only the first `max_dims` coordinates are drawn, so the figure stays readable. Returns the Axes.
    """
    z = _as_numpy(latents, "latents")
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"latents must have shape (N, D) with N >= 2, got {tuple(z.shape)}.")
    if ax is None:
        ax = _new_axes(figsize=(5.5, 3.5))
    # Dark2, not tab10: latent coordinates must not borrow the digits' colours.
    palette = matplotlib.colormaps["Dark2"].colors
    for j in range(min(z.shape[1], max_dims)):
        ax.hist(z[:, j], bins=bins, density=True, histtype="step", linewidth=1.5,
                color=palette[j % len(palette)], label=f"$z_{{{j + 1}}}$")
    low, high = ax.get_xlim()
    x = np.linspace(min(low, -4.0), max(high, 4.0), 400)
    ax.plot(x, np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi), "k--", linewidth=1.5, label="N(0, 1)")
    ax.set_xlabel("latent value")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return ax
