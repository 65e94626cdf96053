"""What every check shares: not done yet, errors, determinism, display, use_if_passed, and the
harness's safety net for outputs too odd to analyse."""

import threading
import time

import pytest
import torch

import vae_lesson
from vae_lesson.checks import (
    CheckResult,
    guard,
    check_kl_divergence,
    check_reparameterize,
    check_sample_prior,
    check_vae_loss,
    use_if_passed,
)

from check_helpers import assert_fails, stub
from test_check_kl_divergence import MISTAKES as KL_MISTAKES
from test_check_reparameterize import CORRECT as REPARAM_CORRECT, MISTAKES as REPARAM_MISTAKES
from test_check_sample_prior import CORRECT as SAMPLE_CORRECT, MISTAKES as SAMPLE_MISTAKES
from test_check_vae_loss import MISTAKES as LOSS_MISTAKES


def mistake(catalogue, diagnosis):
    """The first wrong function in `catalogue` that makes the mistake `diagnosis`."""
    return next(row[1] for row in catalogue if row[2] == diagnosis)


ALL_CHECKS = [check_reparameterize, check_kl_divergence, check_vae_loss, check_sample_prior]
ALL_CHECKS += [vae_lesson.check_autoencoder, vae_lesson.check_training_step]


@pytest.mark.parametrize("check", ALL_CHECKS)
def teststub_is_not_done_yet(check):
    result = check(stub)
    assert result.status == "not done" and not result.passed
    assert result.message.startswith("Not done yet: `stub` still raises NotImplementedError")
    assert "the lesson continues with vae_lesson's reference implementation" in result.message


@pytest.mark.parametrize("check", ALL_CHECKS)
@pytest.mark.parametrize("value, phrase", [(None, "got None"), (torch.zeros(2, 3), "a tensor of shape (2, 3)"), ("f", "type str")])
def test_not_callable_is_explained(check, value, phrase):
    result = check(value)
    assert result.status == "error" and result.diagnosis == "not_callable" and not result.passed
    assert phrase in result.message and f"{check.__name__}(my_function)" in result.hint


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_raising_function_is_reported_with_its_exception(check):
    def broken(*args):
        raise ValueError("mu looks odd")

    result = check(broken)
    assert result.status == "error" and result.diagnosis == "raised"
    assert "`broken` raised ValueError: mu looks odd" in result.message


def test_wrong_number_of_arguments_points_at_the_signature():
    result = check_kl_divergence(lambda mu: mu.sum(-1))
    assert result.status == "error" and "fn(mu, logvar)" in result.hint


@pytest.mark.parametrize(
    "check, fn",
    [
        (check_reparameterize, mistake(REPARAM_MISTAKES, "std_exp_logvar_plus_half")),
        (check_reparameterize, mistake(REPARAM_MISTAKES, "noise_not_normal")),
        (check_kl_divergence, KL_MISTAKES[0][1]),
        (check_vae_loss, LOSS_MISTAKES[0][1]),
        (check_sample_prior, SAMPLE_MISTAKES[7][1]),
    ],
)
def test_checks_are_deterministic(check, fn):
    assert str(check(fn)) == str(check(fn))


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_reparameterize(mistake(REPARAM_MISTAKES, "seeded_inside"))
    check_sample_prior(SAMPLE_CORRECT["lesson"])
    assert torch.equal(torch.rand(3), expected)


def test_checks_work_inside_no_grad():
    # A notebook may have gradients switched off; the gradient tests must still run.
    with torch.no_grad():
        assert check_reparameterize(REPARAM_CORRECT["lesson"]).passed
        assert_fails(check_reparameterize(lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv))), "no_gradient", "No gradient")
    assert torch.is_grad_enabled()


def test_result_displays_in_terminal_and_notebook():
    failed = check_reparameterize(mistake(REPARAM_MISTAKES, "std_exp_logvar_plus_half"))
    text = str(failed)
    assert text.splitlines()[0] == "✗ reparameterize(mu, logvar): not right yet"
    assert "Hint:" in text and "Compare with:  z = mu + torch.exp(0.5 * logvar) * eps" in text
    assert repr(failed) == text
    assert max(len(line) for line in text.splitlines() if "Compare with" not in line) <= 88
    page = failed._repr_html_()
    assert page.startswith("<div") and page.endswith("</div>") and "<script" not in page
    assert "#b71c1c" in page and "exp(logvar + 0.5)" in page and "<code" in page
    passed = check_reparameterize(REPARAM_CORRECT["lesson"])
    assert str(passed).startswith("✓ reparameterize(mu, logvar): passed")
    assert "#1b5e20" in passed._repr_html_()
    assert "#8a4b00" in check_reparameterize(stub)._repr_html_()


def test_html_escapes_the_students_exception_text():
    def shouting(mu, logvar):
        raise RuntimeError("<b>bad</b> & worse")

    page = check_reparameterize(shouting)._repr_html_()
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in page and "<b>bad</b>" not in page


def test_use_if_passed_picks_the_students_function_only_when_it_passed():
    student, reference = REPARAM_CORRECT["lesson"], vae_lesson.reparameterize
    assert use_if_passed(check_reparameterize(student), student, reference) is student
    assert use_if_passed(check_reparameterize(stub), stub, reference) is reference
    assert use_if_passed(check_reparameterize(mistake(REPARAM_MISTAKES, "std_exp_logvar_plus_half")), stub, reference) is reference
    with pytest.raises(TypeError, match="CheckResult"):
        use_if_passed(True, student, reference)


def test_result_is_a_plain_value():
    result = CheckResult("x(y)", "failed", "message", "some_code", "hint", "formula")
    assert not result and not result.passed
    with pytest.raises(AttributeError):
        result.status = "passed"


def meta_kl(mu, logvar):
    # A tensor with no data: every reading of its values raises inside the check.
    return torch.empty(mu.shape[0], device="meta")


def one_thread(value):
    torch.set_num_threads(1)
    return value


def broken(mu, logvar):
    raise ValueError("mu looks odd")


# The endings that are not a named wrong answer, one row each: (diagnosis, status, check, what
# is passed to it, phrase). unreadable_output is the harness's safety net, not a student's mistake:
# an output the check cannot read is reported as such, never raised into the notebook.
HARNESS_CASES = [
    ("not_done", "not done", check_kl_divergence, stub, "still raises NotImplementedError"),
    ("not_callable", "error", check_kl_divergence, None, "needs your function itself"),
    ("raised", "error", check_kl_divergence, broken, "raised ValueError: mu looks odd"),
    ("unreadable_output", "error", check_kl_divergence, meta_kl, "could not make sense"),
    ("timed_out", "error", check_kl_divergence, lambda mu, lv: time.sleep(1), "had not returned after 0.5 seconds"),
    ("changes_global_state", "failed", check_kl_divergence, lambda mu, lv: one_thread(vae_lesson.kl_divergence(mu, lv)),
     "the number of CPU threads"),
]


@pytest.mark.parametrize("diagnosis, status, check, fn, phrase", HARNESS_CASES, ids=[c[0] for c in HARNESS_CASES])
def test_harness_ending_is_explained(diagnosis, status, check, fn, phrase, monkeypatch):
    monkeypatch.setattr(guard, "TIME_LIMIT_S", 0.5)
    monkeypatch.setattr(guard, "STOP_GRACE_S", 0.1)
    result = check(fn)
    assert result.status == status and result.diagnosis == diagnosis and phrase in result.message, result


# ----------------------------------------------------------------------------------------------
# Global state: a student's function that changes torch's settings does not break later cells.


def _reparameterize(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _float64_default(mu, logvar):
    torch.set_default_dtype(torch.float64)
    return _reparameterize(mu, logvar)


def _gradients_off(mu, logvar):
    z = _reparameterize(mu, logvar)
    torch.set_grad_enabled(False)  # after z: the values and gradients are right, the kernel is not
    return z


def _one_thread(mu, logvar):
    torch.set_num_threads(1)
    return _reparameterize(mu, logvar)


def _reseeds_after(mu, logvar):
    z = _reparameterize(mu, logvar)
    torch.manual_seed(0)
    return z


@pytest.mark.parametrize(
    "fn, phrase",
    [
        (_float64_default, "the default dtype (torch.float32 -> torch.float64"),
        (_gradients_off, "gradient mode (True -> False, usually torch.set_grad_enabled(False))"),
        (_one_thread, "the number of CPU threads"),
        (_reseeds_after, "the random seed (reseeded, usually torch.manual_seed)"),
    ],
)
def test_global_settings_are_put_back_and_named(fn, phrase):
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    result = check_reparameterize(fn)
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    assert torch.get_num_threads() == threads and torch.equal(torch.rand(3), expected)
    assert_fails(result, "changes_global_state", phrase)
    assert "The check put them back" in result.message and "Leave global settings alone" in result.hint


def test_a_failure_also_says_what_was_put_back():
    def seeded_and_float64(mu, logvar):
        torch.manual_seed(0)
        torch.set_default_dtype(torch.float64)
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    result = check_reparameterize(seeded_and_float64)
    assert_fails(result, "seeded_inside", "set its own seed")
    assert "the default dtype (torch.float32 -> torch.float64" in result.message
    assert torch.get_default_dtype() == torch.float32


# ----------------------------------------------------------------------------------------------
# A function that never returns does not hang the lesson.


def _endless_loop(mu, logvar):
    while True:
        pass


def _one_long_operation(mu, logvar):
    time.sleep(1.5)  # one call that Python cannot interrupt, like a single huge torch operation
    return mu


@pytest.fixture
def short_time_limit(monkeypatch):
    monkeypatch.setattr(guard, "TIME_LIMIT_S", 0.3)
    monkeypatch.setattr(guard, "STOP_GRACE_S", 0.3)


def _check_threads():
    return {thread for thread in threading.enumerate() if thread.name == "vae_lesson check" and thread.is_alive()}


def test_endless_loop_is_stopped_and_explained(short_time_limit):
    before = _check_threads()
    started = time.perf_counter()
    result = check_reparameterize(_endless_loop)
    assert time.perf_counter() - started < 3
    assert result.status == "error" and result.diagnosis == "timed_out"
    assert "had not returned after 0.3 seconds" in result.message and "stopped waiting" in result.message
    assert "interrupted it, so it is not running any more" in result.message
    assert "loop that never ends" in result.hint
    assert _check_threads() <= before  # the loop's thread ended


def test_a_call_python_cannot_interrupt_is_reported_honestly(short_time_limit):
    result = check_reparameterize(_one_long_operation)
    assert result.diagnosis == "timed_out"
    assert "Python cannot stop a function from outside" in result.message
    assert "restart the kernel" in result.message


# ----------------------------------------------------------------------------------------------
# A function that prints thousands of lines does not flood the notebook.


def _prints_every_row(mu, logvar):
    for row in mu:
        print("row", row.tolist())
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def test_printing_is_capped_and_counted(capsys):
    result = check_reparameterize(_prints_every_row)
    shown = capsys.readouterr().out.splitlines()
    assert result.passed
    assert len(shown) == guard.MAX_PRINTED_LINES + 1 and shown[0] == "row [1.5, -2.0, 0.5, 3.0]"
    assert shown[-1].startswith("[... ") and shown[-1].endswith("more lines your function printed are not shown]")
    assert "printed 16,395 lines while the check ran; the first 20 are shown above" in result.message


def test_a_few_prints_are_shown_as_they_are(capsys):
    def prints_shape(mu, logvar):
        print("shape", tuple(mu.shape))
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    result = check_reparameterize(prints_shape)
    assert capsys.readouterr().out.splitlines() == ["shape (6, 4)", "shape (8192, 4)", "shape (8192, 4)", "shape (5, 4)"]
    assert result.passed and "printed" not in result.message


# ----------------------------------------------------------------------------------------------
# A hint is chosen by the exception's type and what the function was calling, never by its words.


def test_words_in_a_message_do_not_choose_the_hint():
    # The student's own exceptions, worded like PyTorch's: no torch operation failed, so no
    # size or BCE hint (the old checks matched "size of tensor" and "between 0 and 1").
    def says_size(mu, logvar):
        raise RuntimeError("The size of tensor a (4) must match the size of tensor b (20)")

    def says_range(logits, images, mu, logvar):
        raise RuntimeError("all elements of input should be between 0 and 1")

    for result in (check_reparameterize(says_size), check_vae_loss(says_range)):
        assert result.diagnosis == "raised"
        assert result.hint == "Run your function on a small example in a cell of its own to see where it fails."


def test_a_type_error_inside_the_body_is_not_blamed_on_the_signature():
    result = check_reparameterize(lambda mu, logvar: mu + torch.exp(0.5 * logvar) * torch.randn_like(mu.shape))
    assert result.diagnosis == "raised" and "TypeError" in result.message
    assert "The check calls your function as" not in result.hint


def test_a_wrong_signature_is_named_as_such():
    result = check_vae_loss(lambda logits, images: logits.sum())
    assert result.diagnosis == "raised"
    assert result.hint.startswith("The check calls your function as fn(logits, images, mu, logvar)")


def test_torch_distributions_argument_check_is_named():
    # logvar passed as the scale: negative, so Normal's argument check raises a ValueError.
    result = check_reparameterize(lambda mu, logvar: torch.distributions.Normal(mu, logvar).rsample())
    assert result.diagnosis == "raised" and "ValueError" in result.message
    assert "torch.distributions checked the parameters" in result.hint and "exp(0.5 * logvar)" in result.hint


def test_mixed_dtypes_in_a_matrix_product_are_named():
    result = check_sample_prior(lambda model, n: model.decode(torch.randn(n, model.latent_dim, dtype=torch.float64)))
    assert result.diagnosis == "raised"
    assert "Draw z as float32" in result.hint and "float32, float64" in result.hint


def test_an_in_place_operation_that_cannot_work_is_named():
    def expanded_then_filled(model, n):
        z = torch.empty(1, model.latent_dim).expand(n, -1)
        return model.decode(z.normal_())

    result = check_sample_prior(expanded_then_filled)
    assert result.diagnosis == "raised"
    assert "The last torch operation, normal_, works in place" in result.hint


def test_a_hard_coded_size_names_the_operation_and_the_shapes():
    result = check_reparameterize(lambda mu, logvar: mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[0], 20))
    assert "Don't hard-code sizes" in result.hint and "your mul got shapes (6, 4), (6, 20)" in result.hint


def test_probe_sizes_are_not_constants_students_write():
    # A KL weight of 0.5, 2 or 4, or a hard-coded latent size of 2 or 20 (the course's models),
    # must not coincide with a size the checks' diagnoses compare against.
    from vae_lesson.checks import kl_divergence, reparameterize, sample_prior, vae_loss

    student_constants = {0.5, 2, 4, 20}
    batch_sizes = {vae_loss.BATCH, kl_divergence.probe_inputs()[0].shape[0], sample_prior.N_SHAPE, sample_prior.N_STATS}
    latent_sizes = {vae_loss.LATENT, len(reparameterize.MU), sample_prior.LATENT, kl_divergence.probe_inputs()[0].shape[1]}
    assert not {vae_loss.BATCH, vae_loss.LATENT, 1 / vae_loss.BATCH, 1 / vae_loss.LATENT} & student_constants
    assert not batch_sizes & {2, 4, 20} and not latent_sizes & {2, 20}


# ----------------------------------------------------------------------------------------------
# Specific fallbacks: where a cheap test tells, the mistake is named with its fix, not "does not match".


def _flat(images):
    return images.reshape(len(images), -1)


def _kl_sum(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum()


def _loss_with(reconstruction, kl):
    return lambda logits, images, mu, logvar: (reconstruction(logits, _flat(images)) + kl(mu, logvar)) / len(images)


def _bce(logits, x):
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")


FALLBACKS = [
    # (check, wrong function, diagnosis, the cause named in the message, the fix named in the hint)
    (check_reparameterize, lambda mu, lv: torch.exp(0.5 * lv) + mu * torch.randn_like(mu),
     "mean_std_swapped", "mean and the standard deviation are swapped", "mu is the centre"),
    (check_reparameterize, lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.exp(0.5 * lv) * torch.randn_like(mu),
     "std_is_variance", "the noise is multiplied by sigma twice", "sigma = exp(0.5 * logvar)"),
    (check_reparameterize, lambda mu, log_std: mu + torch.exp(log_std) * torch.randn_like(mu),
     "std_is_variance", "as if logvar were log sigma", "Halve logvar"),
    (check_kl_divergence, lambda mu, lv: 0.5 * (lv.exp() - 1 - lv).sum(-1),
     "kl_mu_missing", "no mu^2 term", "Add mu^2"),
    (check_kl_divergence, lambda lv, mu: 0.5 * (mu**2 + lv.exp() - 1 - lv).sum(-1),
     "kl_arguments_swapped", "mu and logvar swapped", "def kl_divergence(mu, logvar)"),
    (check_kl_divergence, lambda mu, log_std: 0.5 * (mu**2 + (2 * log_std).exp() - 1 - 2 * log_std).sum(-1),
     "kl_logvar_as_log_std", "logvar = log sigma", "no factor 2"),
    (check_vae_loss, _loss_with(lambda logits, x: _bce(x, logits), _kl_sum),
     "bce_arguments_swapped", "two arguments swapped", "logits first, images second"),
    (check_vae_loss, _loss_with(lambda logits, x: torch.nn.functional.binary_cross_entropy(x, torch.sigmoid(logits), reduction="sum"), _kl_sum),
     "bce_arguments_swapped", "two arguments swapped", "logits first, images second"),
    (check_vae_loss, _loss_with(_bce, lambda mu, lv: 0.5 * (lv.exp() - 1 - lv).sum()),
     "kl_mu_missing", "no mu^2", "mu^2 + exp(logvar)"),
    (check_vae_loss, _loss_with(_bce, lambda mu, lv: 0.5 * (mu**2 + (2 * lv).exp() - 1 - 2 * lv).sum()),
     "kl_logvar_as_log_std", "logvar = log sigma", "no factor 2"),
    (check_vae_loss, _loss_with(_bce, lambda mu, lv: _kl_sum(lv, mu)),
     "kl_arguments_swapped", "mu and logvar swapped", "with mu and logvar as the loss receives them"),
]


@pytest.mark.parametrize("check, fn, diagnosis, cause, fix", FALLBACKS, ids=[f"{c.__name__}-{d}" for c, _, d, _, _ in FALLBACKS])
def test_specific_mistake_is_named_with_its_fix(check, fn, diagnosis, cause, fix):
    result = check(fn)
    assert_fails(result, diagnosis, cause)
    assert fix in result.hint, result


def test_interrupting_the_kernel_stops_the_students_call_too(monkeypatch):
    # The user presses "interrupt" while the check waits: the interrupt reaches the notebook, and
    # the student's loop, running in the check's worker thread, is stopped rather than left behind.
    before = _check_threads()

    def interrupted_join(self, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "join", interrupted_join)
    with pytest.raises(KeyboardInterrupt):
        check_reparameterize(_endless_loop)
    monkeypatch.undo()
    deadline = time.perf_counter() + 3
    while _check_threads() - before and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert not _check_threads() - before
