import math

import matplotlib

matplotlib.use("Agg")  # no display in tests; must come before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402

from vae_lesson.plotting import (  # noqa: E402
    DIGIT_COLORS,
    digit_legend,
    plot_history,
    plot_latent_ellipses,
    plot_latent_grid,
    plot_latent_scatter,
    plot_marginals,
    plot_reconstructions,
    show_images,
    tile_images,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def random_images(n, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def assert_digit_legend(legend):
    assert [t.get_text() for t in legend.get_texts()] == [str(d) for d in range(10)]
    colors = [to_hex(h.get_color()) for h in legend.legend_handles]
    assert colors == list(DIGIT_COLORS)


def test_digit_colors_are_ten_distinct_colours():
    assert len(DIGIT_COLORS) == 10
    assert len(set(DIGIT_COLORS)) == 10
    for color in DIGIT_COLORS:
        to_rgba(color)  # raises if matplotlib cannot read it


def test_digit_legend_lists_0_to_9_in_the_digit_colours():
    _, ax = plt.subplots()
    assert_digit_legend(digit_legend(ax))


def test_tile_images_puts_each_image_in_its_cell():
    images = random_images(5)
    grid = tile_images(images, ncol=3, padding=2, pad_value=0.5)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    for i in range(5):
        r, c = divmod(i, 3)
        cell = grid[2 + 30 * r: 2 + 30 * r + 28, 2 + 30 * c: 2 + 30 * c + 28]
        np.testing.assert_array_equal(cell, images[i, 0].numpy())
    # the sixth cell (row 1, column 2) is empty padding
    assert np.all(grid[32:60, 62:90] == 0.5)


def test_show_images_draws_one_grid_with_nrow_images_per_row():
    images = random_images(10)
    ax = show_images(images, nrow=4, title="ten digits")
    assert len(ax.images) == 1
    assert ax.images[0].get_array().shape == (3 * 30 + 2, 4 * 30 + 2)
    assert ax.get_title() == "ten digits"
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []


def test_show_images_uses_a_given_axes_and_fewer_columns_for_few_images():
    _, ax = plt.subplots()
    assert show_images(random_images(3), nrow=8, ax=ax) is ax
    assert ax.images[0].get_array().shape == (30 + 2, 3 * 30 + 2)


@pytest.mark.parametrize("shape", [(5, 2, 28, 28), (5, 1, 27, 28), (784,), (0, 1, 28, 28)])
def test_show_images_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        show_images(torch.rand(shape))


def test_show_images_rejects_logits_with_a_hint():
    with pytest.raises(ValueError, match="sigmoid"):
        show_images(torch.randn(4, 1, 28, 28) * 5)


def test_plot_reconstructions_draws_two_rows_of_n_images():
    fig = plot_reconstructions(random_images(12), random_images(12, seed=1), n=6)
    axes = fig.get_axes()
    assert len(axes) == 2
    for ax in axes:
        assert ax.images[0].get_array().shape == (30 + 2, 6 * 30 + 2)
    assert axes[0].get_ylabel() == "original" and axes[1].get_ylabel() == "reconstruction"
    assert fig._suptitle.get_text()


def test_plot_reconstructions_rejects_mismatched_counts():
    with pytest.raises(ValueError, match="reconstruction per original"):
        plot_reconstructions(random_images(4), random_images(3))


def test_plot_latent_scatter_colours_each_point_by_its_digit():
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(300, 2, generator=gen)
    labels = torch.randint(0, 10, (300,), generator=gen)
    ax = plot_latent_scatter(latents, labels, title="AE latents", max_points=100)
    (points,) = ax.collections
    offsets = points.get_offsets()
    assert offsets.shape == (100, 2)
    # find each drawn point among the inputs and check its colour is its digit's colour
    for (x, y), rgba in zip(offsets, points.get_facecolors()):
        i = int(np.argmin(np.abs(latents[:, 0].numpy() - x) + np.abs(latents[:, 1].numpy() - y)))
        assert to_hex(rgba[:3]) == DIGIT_COLORS[int(labels[i])]
    assert ax.get_xlabel() == "$z_1$" and ax.get_ylabel() == "$z_2$"
    assert ax.get_title() == "AE latents"
    assert ax.get_aspect() == 1.0
    assert_digit_legend(ax.get_legend())


def test_plot_latent_scatter_draws_all_points_below_max_and_sets_lim():
    latents = torch.randn(50, 2)
    ax = plot_latent_scatter(latents, torch.arange(50) % 10, lim=3.0)
    assert ax.collections[0].get_offsets().shape == (50, 2)
    assert ax.get_xlim() == (-3.0, 3.0) and ax.get_ylim() == (-3.0, 3.0)


def test_plot_latent_scatter_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"\(N, 2\).*latent_dim=2"):
        plot_latent_scatter(torch.randn(10, 3), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must have shape \(10,\)"):
        plot_latent_scatter(torch.randn(10, 2), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="digits 0-9"):
        plot_latent_scatter(torch.randn(10, 2), torch.full((10,), 10))


def test_plot_latent_ellipses_draws_the_n_sigma_ellipse_of_each_gaussian():
    mu = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
    logvar = torch.log(torch.tensor([[0.04, 0.25], [1.0, 0.01]]))  # sigma (0.2, 0.5) and (1, 0.1)
    ax = plot_latent_ellipses(mu, logvar, torch.tensor([3, 7]), n_sigma=2)
    assert len(ax.patches) == 2
    for patch, centre, sigma, digit in zip(ax.patches, mu.numpy(), np.exp(0.5 * logvar.numpy()), (3, 7)):
        # every point the outline passes through (each segment's end; Bezier control points lie off
        # the curve), in data coordinates, lies on ((z - mu) / sigma)^2 summed = 2^2
        path = patch.get_patch_transform().transform_path(patch.get_path())
        outline = np.array([vertices[-2:] for vertices, _ in path.iter_segments()])
        assert len(outline) >= 8
        radius = np.sqrt((((outline - centre) / sigma) ** 2).sum(axis=1))
        np.testing.assert_allclose(radius, 2.0, rtol=1e-6)
        assert to_hex(patch.get_edgecolor()[:3]) == DIGIT_COLORS[digit]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), mu.numpy())
    assert_digit_legend(ax.get_legend())


def test_plot_latent_ellipses_2_sigma_ellipse_holds_86_percent_of_the_gaussian():
    mu, sigma = np.array([1.0, -0.5]), np.array([0.3, 1.2])
    logvar = torch.tensor(2 * np.log(sigma)[None])
    ax = plot_latent_ellipses(torch.tensor(mu[None]), logvar, torch.tensor([0]), n_sigma=2)
    patch = ax.patches[0]
    path = patch.get_patch_transform().transform_path(patch.get_path())
    draws = mu + sigma * np.random.default_rng(0).standard_normal((200_000, 2))
    inside = path.contains_points(draws).mean()
    assert inside == pytest.approx(1 - math.exp(-2), abs=0.005)   # chi-square with 2 degrees of freedom


def test_plot_latent_ellipses_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        plot_latent_ellipses(torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="n_sigma"):
        plot_latent_ellipses(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), n_sigma=0)
    with pytest.raises(ValueError, match=r"mu must have shape \(N, 2\)"):
        plot_latent_ellipses(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))


def test_plot_history_draws_one_line_per_key_against_the_epoch():
    history = {"epoch": [1, 2, 3], "train_loss": [200.0, 150.0, 140.0], "test_loss": [190.0, 155.0, 145.0],
               "train_kl": [5.0, 6.0, 7.0]}
    ax = plot_history(history, keys=("train_loss", "test_loss"))
    assert len(ax.get_lines()) == 2
    np.testing.assert_array_equal(ax.get_lines()[1].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [190.0, 155.0, 145.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss", "test loss"]
    assert ax.get_ylabel() == "nats per image" and ax.get_xlabel() == "epoch"


def test_plot_history_names_a_missing_key():
    with pytest.raises(ValueError, match="test_loss"):
        plot_history({"train_loss": [1.0]}, keys=("train_loss", "test_loss"))


def test_plot_latent_grid_labels_ticks_with_the_grid_values():
    n = 5
    values = torch.linspace(-2, 2, n)
    images = random_images(n * n)
    ax = plot_latent_grid(images, values, max_ticks=5)
    assert ax.images[0].get_array().shape == (n * 28, n * 28)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "-1", "0", "1", "2"]
    # rows run from high z2 at the top to low z2 at the bottom
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2", "1", "0", "-1", "-2"]
    assert ax.get_xlabel() == "$z_1$" and ax.get_ylabel() == "$z_2$"


def test_plot_latent_grid_accepts_an_extent_and_grid_points():
    n = 3
    images = random_images(n * n)
    ax_extent = plot_latent_grid(images, 1.5)
    assert [t.get_text() for t in ax_extent.get_xticklabels()] == ["-1.5", "0", "1.5"]
    z1 = torch.tensor([-1.0, 0.0, 1.0])
    z2 = torch.tensor([3.0, 2.0, 1.0])
    points = torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    ax_points = plot_latent_grid(images, points)
    assert [t.get_text() for t in ax_points.get_yticklabels()] == ["3", "2", "1"]
    column_major = points.reshape(n, n, 2).transpose(0, 1).reshape(-1, 2)
    with pytest.raises(ValueError, match="row by row"):
        plot_latent_grid(images, column_major)


def test_plot_latent_grid_rejects_a_non_square_count():
    with pytest.raises(ValueError, match="n\\*n images"):
        plot_latent_grid(random_images(10), 2.0)


def test_plot_marginals_draws_a_histogram_per_coordinate_and_the_prior_density():
    latents = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    ax = plot_marginals(latents)
    assert len(ax.patches) == 2  # one step histogram per latent coordinate
    (density,) = ax.get_lines()
    x = torch.as_tensor(density.get_xdata())
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(x).exp()
    np.testing.assert_allclose(density.get_ydata(), expected.numpy(), rtol=1e-6)
    # a density histogram integrates to one
    heights, edges = np.histogram(latents[:, 0].numpy(), bins=50, density=True)
    assert math.isclose((heights * np.diff(edges)).sum(), 1.0, rel_tol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["$z_{1}$", "$z_{2}$", "N(0, 1)"]


def test_plot_marginals_rejects_a_flat_tensor():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        plot_marginals(torch.randn(100))
