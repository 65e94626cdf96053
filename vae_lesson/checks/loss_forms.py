"""What a VAE loss may be built from: the reconstruction and KL forms students write, fitted to totals.

The loss check computes, on each probe, every reconstruction term and every KL term below, and
fits the student's totals as a * reconstruction + b * KL for each pair of forms; the first pair
that fits exactly names the forms (FORM_MISTAKES), the weights a and b name the scaling mistakes
(vae_loss's tables). Adding a form is adding an entry to a forms function and a row here.
"""

import torch
import torch.nn.functional as F

from ..kl import kl_divergence
from ..loss import reconstruction_loss
from .harness import Mistake


def reconstruction_forms(logits, images):
    """The reconstruction terms per image (summed over pixels, / batch) a loss may be built on."""
    x = images.reshape(len(logits), -1)
    n = len(logits)
    p = torch.sigmoid(logits)
    return {
        "bce": reconstruction_loss(logits, images),
        "sigmoid_twice": F.binary_cross_entropy_with_logits(p, x, reduction="sum") / n,
        "mse": (p - x).pow(2).sum() / n,
        "mse_logits": (logits - x).pow(2).sum() / n,
        "bce_swapped": F.binary_cross_entropy_with_logits(x, logits, reduction="sum") / n,
        "bce_probabilities_swapped": F.binary_cross_entropy(x, p, reduction="sum") / n,
    }


def kl_forms(mu, logvar):
    """The KL terms per image (summed over latent dimensions, averaged over the batch) a loss may use."""
    return {
        "kl": kl_divergence(mu, logvar).mean(),
        "kl_mu_missing": (0.5 * (logvar.exp() - 1 - logvar)).sum(dim=-1).mean(),
        "kl_logvar_as_log_std": (0.5 * (mu**2 + (2 * logvar).exp() - 1 - 2 * logvar)).sum(dim=-1).mean(),
        "kl_arguments_swapped": kl_divergence(logvar, mu).mean(),
    }


_BCE = "Use F.binary_cross_entropy_with_logits(logits, x, reduction='sum')."
# Facts: form (the reconstruction form the fit found), kl_form (the KL form), or None for both.
FORM_MISTAKES = (
    Mistake("sigmoid_twice", lambda f: f.form == "sigmoid_twice",
            "Your reconstruction term matches BCE computed on sigmoid(sigmoid(logits)): the sigmoid is applied "
            "twice. Giving binary_cross_entropy_with_logits probabilities (torch.sigmoid(logits)) instead of "
            "logits is the same mistake; the check cannot tell the two apart.",
            "binary_cross_entropy_with_logits applies the sigmoid itself: pass it the raw logits. Or use "
            "F.binary_cross_entropy(torch.sigmoid(logits), x, reduction='sum'), with one sigmoid."),
    Mistake("mse", lambda f: f.form == "mse",
            "Your reconstruction term matches a squared error sum((sigmoid(logits) - x)^2), not the binary "
            "cross-entropy. The lesson's decoder models each pixel as a Bernoulli probability, whose negative "
            "log-likelihood is the BCE; a squared error is a different (and, for the ELBO, wrongly scaled) loss.",
            _BCE),
    Mistake("mse_logits", lambda f: f.form == "mse_logits",
            "Your reconstruction term matches a squared error between the logits and the images, "
            "sum((logits - x)^2): logits are raw scores, not pixel values, and the lesson's loss is the binary "
            "cross-entropy.",
            _BCE),
    Mistake("bce_arguments_swapped", lambda f: f.form in ("bce_swapped", "bce_probabilities_swapped"),
            "Your reconstruction term is the BCE with its two arguments swapped: the images are given as the "
            "prediction and the logits (or probabilities) as the target. PyTorch's losses take the prediction "
            "first and the target second.",
            "F.binary_cross_entropy_with_logits(logits, x, reduction='sum'): logits first, images second."),
    Mistake("kl_mu_missing", lambda f: f.kl_form == "kl_mu_missing",
            "Your KL term has no mu^2: 0.5 * sum(exp(logvar) - 1 - logvar) measures only the spread, so nothing "
            "pulls the means towards 0.",
            "KL = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)."),
    Mistake("kl_logvar_as_log_std", lambda f: f.kl_form == "kl_logvar_as_log_std",
            "Your KL term is the closed form for logvar = log sigma, the log standard deviation (the convention "
            "of some other courses): 0.5 * sum(mu^2 + exp(2 * logvar) - 1 - 2 * logvar). Here logvar is "
            "log sigma^2.",
            "With logvar = log sigma^2 there is no factor 2: sigma^2 = exp(logvar) and log sigma^2 = logvar."),
    Mistake("kl_arguments_swapped", lambda f: f.kl_form == "kl_arguments_swapped",
            "Your KL term is the closed form with mu and logvar swapped.",
            "KL = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), with mu and logvar as the loss receives them."),
    Mistake("loss_wrong", lambda f: f.form is None,
            "Your loss does not match the negative ELBO, and not in any of the ways the check knows (a term "
            "scaled, left out, or computed with MSE, a doubled sigmoid or swapped arguments).",
            "Build it in two parts and print each: reconstruction = BCE summed over pixels; kl = the closed "
            "form summed over latent dimensions; then (reconstruction + kl) / batch_size."),
)


def fit(totals, reconstructions, kls):
    """(form, kl_form, a, b): the forms for which totals = a * reconstruction + b * KL fits best.

    totals: (probes,) float64; reconstructions, kls: one dict of forms per probe, the right forms
    first. Of the pairs that fit to float32 rounding, a later pair wins only if it fits ten times
    closer: the KL is small next to the reconstruction, so a wrong KL form can nearly fit with an odd
    b, while the true forms fit hundreds of times closer; and when a term is missing (a or b is 0)
    every form of it fits alike, and the right form is kept. The forms are None when no pair fits;
    a and b are then those of the right forms.
    """
    tolerance = 1e-4 * float(totals.abs().max()) + 1e-5
    best, first = None, None
    for kl_form in kls[0]:
        kl = torch.stack([variant[kl_form] for variant in kls])
        for form in reconstructions[0]:
            recon = torch.stack([variant[form] for variant in reconstructions])
            design = torch.stack([recon, kl], dim=1)
            a, b = torch.linalg.lstsq(design, totals[:, None]).solution[:, 0].tolist()
            residual = float((design @ torch.tensor([a, b], dtype=torch.float64) - totals).abs().max())
            first = first or (a, b)
            if residual <= tolerance and (best is None or residual < best[0] / 10):
                best = (residual, form, kl_form, a, b)
    return best[1:] if best else (None, None, *first)
