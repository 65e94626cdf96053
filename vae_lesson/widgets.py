"""A live explorer of two 2-D latent spaces: one point, decoded by the autoencoder and by the VAE.

Two sliders pick a point z = (z1, z2). Each model's decoder turns it into an image, and each
model's latent scatter plot shows where the point sits among the encoded digits. Moving the
point into a gap between clusters shows the difference the course is about: the VAE decodes
something digit-like almost everywhere near the origin, the autoencoder often does not.

Everything on screen is one of ipywidgets' own widgets (sliders, and Images holding PNG bytes rendered
with matplotlib's Agg canvas: no pyplot, so no extra figures appear in the notebook), which every
front end with ipywidgets support draws without another extension: JupyterLab, Notebook 7, VS Code,
Colab. Where there is none (a static page, an exported notebook), displaying the explorer shows a
still picture of the same four panels instead.
"""

import base64
import io

import ipywidgets as widgets
import matplotlib.image
import numpy as np
import torch
from matplotlib.figure import Figure

from . import validate
from .models import model_device
from .plotting import digit_legend, plot_latent_scatter

CSS_PREFIX = "vae-lesson"  # class names a browser test finds the widgets by, e.g. "vae-lesson-ae-image"
IMAGE_ZOOM = 5  # decoded 28x28 digits are shown as 140x140 PNGs, each pixel a 5x5 block
# The output type front ends with ipywidgets support draw as a live widget (protocol version 2, as in
# ipywidgets 7 and 8).
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def _png_of_digit(image):
    """A (28, 28) array in [0, 1] -> PNG bytes of a grey image, enlarged without blurring."""
    # 8-bit grey written as RGB directly: a colormap would add its own rounding to 256 levels
    grey = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    big = np.kron(grey, np.ones((IMAGE_ZOOM, IMAGE_ZOOM), dtype=np.uint8))
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.stack([big] * 3, axis=-1), format="png")
    return buffer.getvalue()


def _png_of_figure(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _symmetric_limit(*latents):
    """Half-width of a square view holding 99% of every set of codes, so both plots share one scale."""
    points = torch.cat([z.detach().abs().flatten().double() for z in latents])
    return float(torch.quantile(points, 0.99)) * 1.1


class LatentExplorer:
    """Sliders for (z1, z2), both decoders' images at that point, and both scatter plots with a marker.

    Attributes a test or a notebook can use: widget (the VBox to display), z1, z2 (FloatSliders),
    ae_image, vae_image (decoded digits), ae_scatter, vae_scatter (scatter plots), ae_marker,
    vae_marker (the matplotlib markers), point (the current (z1, z2)). update(z1, z2) moves the point.
    """

    def __init__(self, autoencoder, vae, ae_latents, vae_latents, labels, lim=None, max_points=2000, step=0.05):
        for name, model in (("autoencoder", autoencoder), ("vae", vae)):
            validate.model(model, name)
            if getattr(model, "latent_dim", None) != 2:
                raise ValueError(
                    f"the explorer draws a 2-D latent plane, but the {name} has "
                    f"latent_dim={getattr(model, 'latent_dim', None)}; train it with latent_dim=2."
                )
        labels = validate.labels(labels, "labels", len(labels) if isinstance(labels, torch.Tensor) else 0)
        max_points = validate.whole_number(max_points, "max_points")
        step = validate.number(step, "step", above=0)
        for name, z in (("ae_latents", ae_latents), ("vae_latents", vae_latents)):
            validate.latents(z, name, min_points=1, dim=2)
            if z.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"{name} must have shape (N, 2) with one row per label (N={labels.shape[0]}), "
                    f"got {tuple(z.shape)}; encode the images with sampling.encode_dataset(model, images)."
                )
        self.models = {"ae": autoencoder, "vae": vae}
        lim = _symmetric_limit(ae_latents, vae_latents) if lim is None else float(lim)

        self.z1 = self._slider("z1", lim, step)
        self.z2 = self._slider("z2", lim, step)
        self.ae_image, self.vae_image = self._image("ae-image"), self._image("vae-image")
        self.ae_scatter, self.vae_scatter = self._image("ae-scatter"), self._image("vae-scatter")
        self._figures, markers = {}, {}
        for key, latents, title in (("ae", ae_latents, "Autoencoder"), ("vae", vae_latents, "VAE")):
            figure = Figure(figsize=(3.3, 3.8), dpi=80, layout="constrained")
            ax = plot_latent_scatter(latents, labels, ax=figure.add_subplot(), title=f"{title} latents",
                                     max_points=max_points, lim=lim)
            # the digit legend below the plot, in two rows, keeps the small square plot wide
            digit_legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=5, title=None,
                         columnspacing=0.8, handletextpad=0.1)
            (markers[key],) = ax.plot([0.0], [0.0], marker="X", markersize=12, color="black",
                                      markeredgecolor="white", linestyle="")
            self._figures[key] = figure
        self.ae_marker, self.vae_marker = markers["ae"], markers["vae"]

        columns = [
            widgets.VBox([widgets.HTML(f"<b>{title}</b> decoder"), image, scatter])
            for title, image, scatter in (("Autoencoder", self.ae_image, self.ae_scatter),
                                          ("VAE", self.vae_image, self.vae_scatter))
        ]
        self.widget = widgets.VBox([widgets.HBox([self.z1, self.z2]), widgets.HBox(columns)])
        self.widget.add_class(f"{CSS_PREFIX}-latent-explorer")
        self._moving = False
        self.z1.observe(self._on_slider, names="value")
        self.z2.observe(self._on_slider, names="value")
        self._render()

    @staticmethod
    def _slider(name, lim, step):
        slider = widgets.FloatSlider(value=0.0, min=-lim, max=lim, step=step, description=name,
                                     continuous_update=True, readout_format=".2f")
        slider.add_class(f"{CSS_PREFIX}-{name}-slider")
        return slider

    @staticmethod
    def _image(name):
        image = widgets.Image(format="png")
        image.add_class(f"{CSS_PREFIX}-{name}")
        return image

    @property
    def point(self):
        return (self.z1.value, self.z2.value)

    def update(self, z1=None, z2=None):
        """Move the point to (z1, z2) (values outside the sliders' range are clipped) and redraw once."""
        self._moving = True  # setting two sliders would otherwise redraw twice
        try:
            if z1 is not None:
                self.z1.value = z1
            if z2 is not None:
                self.z2.value = z2
        finally:
            self._moving = False
        self._render()

    def _on_slider(self, change):
        if not self._moving:
            self._render()

    @torch.no_grad()
    def _render(self):
        for key, image, scatter, marker in (("ae", self.ae_image, self.ae_scatter, self.ae_marker),
                                            ("vae", self.vae_image, self.vae_scatter, self.vae_marker)):
            model = self.models[key]
            model.eval()
            z = torch.tensor([self.point], dtype=torch.float32, device=model_device(model))
            image.value = _png_of_digit(model.decode(z)[0, 0].cpu().numpy())
            marker.set_data([self.z1.value], [self.z2.value])
            scatter.value = _png_of_figure(self._figures[key])

    def static_png(self):
        """PNG bytes of what the explorer shows now: both decoded digits above both scatter plots."""
        figure = Figure(figsize=(6.6, 6.0), dpi=80, layout="constrained")
        axes = figure.subplots(2, 2, height_ratios=[1.0, 1.5])
        for column, (title, image, scatter) in enumerate((("Autoencoder", self.ae_image, self.ae_scatter),
                                                          ("VAE", self.vae_image, self.vae_scatter))):
            for row, png in enumerate((image.value, scatter.value)):
                axes[row, column].imshow(matplotlib.image.imread(io.BytesIO(bytes(png)), format="png"))
                axes[row, column].set_axis_off()
            axes[0, column].set_title(f"{title} decoder")
        figure.suptitle(f"z = ({self.z1.value:.2f}, {self.z2.value:.2f}): a still picture; run the notebook "
                        "in Jupyter to move the point")
        return _png_of_figure(figure)

    def _repr_mimebundle_(self, include=None, exclude=None):
        # A cell ending with `explorer` shows the widget where the front end draws widgets, and the
        # still picture (image/png) where it does not: each front end picks the richest type it knows.
        bundle = {
            "text/plain": f"LatentExplorer at z = ({self.z1.value:.2f}, {self.z2.value:.2f})",
            "image/png": base64.b64encode(self.static_png()).decode("ascii"),
        }
        if getattr(self.widget, "comm", None) is not None:  # a closed widget has no view left to show
            bundle[WIDGET_VIEW_MIMETYPE] = {"version_major": 2, "version_minor": 0,
                                            "model_id": self.widget.model_id}
        return bundle


def latent_explorer(autoencoder, vae, ae_latents, vae_latents, labels, lim=None, max_points=2000, step=0.05):
    """Build a LatentExplorer: autoencoder and vae with latent_dim=2, their codes (N, 2) for the same
    images, and those images' digit labels (N,). Display `.widget` (or the explorer itself)."""
    return LatentExplorer(autoencoder, vae, ae_latents, vae_latents, labels, lim=lim, max_points=max_points,
                          step=step)
