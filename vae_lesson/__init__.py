"""vae-lesson: from a plain autoencoder to a variational autoencoder, one idea per module."""

from .data import SPLITS, OfflineSampleWarning, iterate_batches, load_mnist, offline_sample
from .kl import kl_divergence, kl_monte_carlo
from .loss import LossTerms, autoencoder_loss, reconstruction_loss, vae_loss
from .models import VAE, Autoencoder, build_model, model_device, set_output_bias_to_mean_image
from .reparameterize import reparameterize
from .recipes import RECIPES, TrainingConfig, fresh_model, recipe
from .cache import CacheWriteWarning, trained_model
from .checkpoint import load_checkpoint, save_checkpoint
from .sampling import encode_dataset, interpolate, latent_grid, latent_grid_coordinates, sample_prior
from .training import evaluate, train, train_step
from .likelihood import log_likelihood
from .collapse import active_units, encode_with_logvar, free_bits_kl, kl_per_dimension, latent_activity, warmup_beta
from .surgery import SurgeryTerms, aggregate_log_density, elbo_surgery
from .likelihood import iwae_bound
from . import checks
from .checks import (
    CheckResult,
    check_active_units,
    check_kl_divergence,
    check_reparameterize,
    check_sample_prior,
    check_vae_loss,
    use_if_passed,
)
from .checks import check_autoencoder, check_training_step
from .plotting import (
    DIGIT_COLORS,
    digit_legend,
    plot_history,
    plot_latent_ellipses,
    plot_latent_grid,
    plot_latent_scatter,
    plot_marginals,
    plot_reconstructions,
    show_images,
)
from .metrics import (
    classifier_accuracy,
    confident_fraction,
    effective_class_count,
    gaussian_fit_kl,
    mmd_to_standard_normal,
    train_digit_classifier,
)
from .widgets import LatentExplorer, latent_explorer
from .checks import check_iwae_bound
from .checks import check_gaussian_fit_kl
from .checks import check_vae_model
