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
