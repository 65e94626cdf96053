"""Exercise checks: run a student's function, compare it with the reference, and name the mistake.

Each ``check_*`` function takes the student's function, runs it on inputs chosen so that every
classic mistake gives a recognisably different answer, and returns a `CheckResult`: ``.passed``,
``.message`` (the diagnosis), a hint and the formula to compare with. A wrong answer never
raises; it explains. The checks judge behaviour, never source text; they are deterministic
(fixed seeds, the caller's random state restored afterwards) and take well under a second on a CPU.

The exercises and the exact signatures the notebooks ask for, one module each:

    reparameterize(mu, logvar) -> z                  mu, logvar, z: (batch, latent_dim)
    kl_divergence(mu, logvar) -> kl                  kl: (batch,), one KL per example
    vae_loss(logits, images, mu, logvar) -> loss     a scalar tensor: negative ELBO per image
    sample_prior(model, n) -> images                 (n, 1, 28, 28) pixel probabilities
    class MyAutoencoder(nn.Module)                   forward(images) -> (logits (N, 784), z (N, latent_dim))
    train_step(model, optimizer, images) -> float    one optimizer step on the reconstruction loss
    MyVAE(latent_dim, hidden_dim)                    a class: encode -> (mu, logvar), forward -> (logits, mu, logvar)
    iwae_bound(log_weights) -> bound                 log_weights (k, N), bound (N,): logsumexp - log k
    gaussian_fit_kl(codes) -> kl                     codes (N, D); one number, KL(N(m, S) || N(0, I))
    active_units(mu, threshold=0.01) -> int          mu: (N, D) means; the count of active dimensions

After a check, `use_if_passed` picks the student's function or the reference, so the lesson
continues either way.

Layout: `result` (CheckResult, use_if_passed), `harness` (run_check, Check, Mistake, snapshot,
closeness), `guard` (each call of the student's function: global settings put back, a time limit,
printing capped), `errors` (a hint for an exception, from its type and the torch function that
raised), `normal_draws` (the one test for "fresh independent N(0, 1) draws"), and one module per
exercise, named after the function the student writes (`loss_forms` holds the loss check's forms).

How to add a mistake: in the exercise's module, add one `Mistake(code, recognise, message, hint)`
row to the table whose facts can recognise it (rows are tried in order; put a specific row before
the general one it refines), and add the student-like wrong function that makes it to that
exercise's MISTAKES catalogue in tests/test_check_<exercise>.py. tests/test_check_codes.py fails
while any code in a module's CODES is reached by no catalogue entry. A right answer that is only
inexact at extreme inputs (a library's formula) is a row too, given to `check.caution_first`: it
passes, with the caution in its message, and its test goes in the CAUTIONS catalogue.

How to add an exercise `foo`: write `checks/foo.py` with its FORMULA, mistakes tables, `CODES =
codes(...)` and `check_foo(fn)`, which calls `run_check(exercise, FORMULA, fn, body, "check_foo",
signature, ERROR_HINTS)` with a `body(check)` that calls the student's function through
`check.call`, stops with `check.fail_first(TABLE, facts)` and returns the success message;
ERROR_HINTS holds its `errors.ErrorHint` rows for exceptions its students typically hit. Import
`check_foo` below and add the module to EXERCISES; write tests/test_check_foo.py with CORRECT and
MISTAKES catalogues (test_check_codes.py finds it by the module's name).
"""

from . import active_units, guard, kl_divergence, reparameterize, sample_prior, vae_loss
from .harness import HARNESS_CODES, INPUT_MISTAKES, OUTPUT_TYPE_MISTAKES, Mistake
from .active_units import check_active_units
from .kl_divergence import check_kl_divergence
from .reparameterize import check_reparameterize
from .result import ERROR, FAILED, NOT_DONE, PASSED, CheckResult, use_if_passed
from .sample_prior import check_sample_prior
from .vae_loss import check_vae_loss
from .autoencoder import check_autoencoder
from .training_step import check_training_step
from .vae_model import check_vae_model
from .iwae_bound import check_iwae_bound
from .gaussian_fit_kl import check_gaussian_fit_kl
from . import autoencoder, training_step, vae_model, iwae_bound, gaussian_fit_kl

# Every exercise module, in course order: each has CODES (its diagnosis codes) and a check_<name> function.
EXERCISES = (autoencoder, training_step, reparameterize, kl_divergence, vae_loss, vae_model, sample_prior, iwae_bound,
             gaussian_fit_kl, active_units)
