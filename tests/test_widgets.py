import base64
import io

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vae_lesson.models import VAE, Autoencoder  # noqa: E402
from vae_lesson.widgets import LatentExplorer, latent_explorer  # noqa: E402

N = 60


def make_explorer(**kwargs):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    ae, vae = Autoencoder(latent_dim=2, hidden_dim=16), VAE(latent_dim=2, hidden_dim=16)
    ae_latents = torch.randn(N, 2, generator=gen) * 5
    vae_latents = torch.randn(N, 2, generator=gen)
    labels = torch.arange(N) % 10
    return latent_explorer(ae, vae, ae_latents, vae_latents, labels, **kwargs)


def decode_png(data):
    return matplotlib.image.imread(io.BytesIO(bytes(data)), format="png")


def test_explorer_builds_a_widget_with_findable_parts():
    explorer = make_explorer()
    assert isinstance(explorer, LatentExplorer)
    assert isinstance(explorer.widget, ipywidgets.VBox)
    assert isinstance(explorer.z1, ipywidgets.FloatSlider) and isinstance(explorer.z2, ipywidgets.FloatSlider)
    for name in ("ae_image", "vae_image", "ae_scatter", "vae_scatter"):
        image = getattr(explorer, name)
        assert isinstance(image, ipywidgets.Image)
        assert bytes(image.value).startswith(b"\x89PNG"), f"{name} holds no PNG"
        assert f"vae-lesson-{name.replace('_', '-')}" in image._dom_classes
    assert "vae-lesson-latent-explorer" in explorer.widget._dom_classes
    # a decoded digit: 28x28 pixels, each shown as a 5x5 block
    assert decode_png(explorer.ae_image.value).shape[:2] == (140, 140)
    # the same scale for both scatter plots: the sliders cover it symmetrically
    assert explorer.z1.min == -explorer.z1.max and explorer.z2.max == explorer.z1.max


def test_the_decoded_image_is_the_decoder_output_at_the_point():
    explorer = make_explorer()
    explorer.update(0.7, -0.4)
    with torch.no_grad():
        expected = explorer.models["vae"].decode(torch.tensor([[0.7, -0.4]]))[0, 0].numpy()
    shown = decode_png(explorer.vae_image.value)[::5, ::5, 0]  # grey: R == G == B
    np.testing.assert_allclose(shown, expected, atol=0.5 / 255 + 1e-6)


def test_moving_a_slider_changes_both_images_and_the_markers():
    explorer = make_explorer(lim=3.0)
    before = {name: getattr(explorer, name).value for name in ("ae_image", "vae_image", "ae_scatter", "vae_scatter")}
    assert explorer.ae_marker.get_data() == ([0.0], [0.0])
    explorer.z1.value = 2.0  # as a student (or the browser test) would drag it
    explorer.z2.value = -1.5
    for name, value in before.items():
        assert getattr(explorer, name).value != value, f"{name} did not change"
    for marker in (explorer.ae_marker, explorer.vae_marker):
        assert marker.get_data() == ([2.0], [-1.5])
    assert explorer.point == (2.0, -1.5)


def test_update_moves_the_point_and_clips_to_the_slider_range():
    explorer = make_explorer(lim=2.0)
    explorer.update(5.0, -1.0)
    assert explorer.point == (2.0, -1.0)
    assert explorer.vae_marker.get_data() == ([2.0], [-1.0])


def test_explorer_rejects_models_that_are_not_2d():
    latents = torch.randn(N, 2)
    labels = torch.arange(N) % 10
    with pytest.raises(ValueError, match="latent_dim=3.*latent_dim=2"):
        latent_explorer(Autoencoder(latent_dim=2, hidden_dim=8), VAE(latent_dim=3, hidden_dim=8), latents, latents,
                        labels)


def test_explorer_rejects_latents_of_the_wrong_shape():
    labels = torch.arange(N) % 10
    model_ae, model_vae = Autoencoder(latent_dim=2, hidden_dim=8), VAE(latent_dim=2, hidden_dim=8)
    with pytest.raises(ValueError, match=r"vae_latents must have shape \(N, 2\)"):
        latent_explorer(model_ae, model_vae, torch.randn(N, 2), torch.randn(N - 1, 2), labels)


# --- every front end: ipywidgets' own widgets only, and a still picture where widgets are not drawn ------

def widget_tree(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from widget_tree(child)


def test_the_explorer_uses_only_ipywidgets_own_widgets():
    # A widget from another package needs its own front-end extension, which Colab, VS Code or a
    # JupyterLab without that extension would not draw.
    explorer = make_explorer()
    widgets = list(widget_tree(explorer.widget))
    assert len(widgets) >= 9  # the box, the sliders, the two columns with a title, a digit and a plot each
    for widget in widgets:
        assert type(widget).__module__.startswith("ipywidgets."), type(widget)
        assert widget._model_module in {"@jupyter-widgets/controls", "@jupyter-widgets/base"}, widget._model_module
        assert widget._view_module in {"@jupyter-widgets/controls", "@jupyter-widgets/base"}, widget._view_module


def displayed(obj):
    """What IPython sends to the front end for a cell that ends with `obj`."""
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(obj)
    return data


def test_a_cell_ending_with_the_explorer_offers_the_widget_and_a_still_picture():
    explorer = make_explorer(lim=3.0)
    data = displayed(explorer)
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id
    still = decode_png(base64.b64decode(data["image/png"]))
    assert still.shape[:2] == (480, 528)  # 6.0 x 6.6 inches at 80 dpi
    assert data["text/plain"] == "LatentExplorer at z = (0.00, 0.00)"
    # the picture is of the current point: moving it changes the picture and its caption
    explorer.update(2.0, -1.5)
    moved = displayed(explorer)
    assert moved["image/png"] != data["image/png"]
    assert moved["text/plain"] == "LatentExplorer at z = (2.00, -1.50)"


def test_the_still_picture_holds_both_decoded_digits():
    explorer = make_explorer()
    black_pixels = {}
    for key in ("ae", "vae"):  # decoders that draw an all-black digit, so it can be found in the picture
        explorer.models[key].decode = lambda z: torch.zeros(z.shape[0], 1, 28, 28)
    explorer.update(0.5, 0.5)
    still = decode_png(explorer.static_png())[..., :3]
    top = still[: still.shape[0] // 2]
    for side, panel in (("left", top[:, : top.shape[1] // 2]), ("right", top[:, top.shape[1] // 2:])):
        black_pixels[side] = int((panel.max(axis=-1) < 0.02).sum())
    # each digit fills a square panel of well over 100 x 100 pixels; text and axes are far fewer
    assert min(black_pixels.values()) > 100 * 100, black_pixels


def test_a_static_export_shows_the_still_picture(tmp_path):
    # nbconvert's HTML, like GitHub's preview, has no live kernel and so no widget to draw
    import nbformat
    from nbconvert import HTMLExporter

    data = displayed(make_explorer())
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=data, execution_count=1)]
    notebook.cells = [cell]
    html, _ = HTMLExporter().from_notebook_node(notebook)
    assert f"data:image/png;base64,{data['image/png']}" in html


def test_the_browser_test_expects_the_widget_not_its_still_picture(tmp_path):
    # JupyterLab draws the explorer's widget view; the browser test must not wait for a figure there
    import nbformat
    from browser_helpers import committed_image_counts

    explorer_cell = nbformat.v4.new_code_cell("explorer")
    explorer_cell.outputs = [nbformat.v4.new_output("execute_result", data=displayed(make_explorer()),
                                                    execution_count=1)]
    figure_cell = nbformat.v4.new_code_cell("plt.show()")
    figure_cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                          "text/plain": "<Figure>"})]
    notebook = nbformat.v4.new_notebook(cells=[explorer_cell, figure_cell])
    nbformat.write(notebook, tmp_path / "n.ipynb")
    assert committed_image_counts(tmp_path / "n.ipynb") == [0, 1]
