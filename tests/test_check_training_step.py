"""vae_lesson.checks.training_step: a catalogue of student training steps, each wrong one named for what it is.

Every buggy step in MISTAKES makes one known mistake and must fail with its own diagnosis (a stable
code plus a phrase of the message the student reads); every step in CORRECT, written the ways
students really write them, must pass.
"""

import pytest
import torch
import torch.nn.functional as F

import vae_lesson as vl
from vae_lesson.checks import check_training_step

from check_helpers import assert_fails


def _bce(logits, images, reduction="sum"):
    return F.binary_cross_entropy_with_logits(logits, images.view(len(images), -1), reduction=reduction)


# ----------------------------------------------------------------------------------------------
# Correct steps


def _step_lesson(model, optimizer, images):
    optimizer.zero_grad()
    logits, z = model(images)
    loss = _bce(logits, images) / len(images)
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_model_zero_grad_train(model, optimizer, images):
    model.train()
    model.zero_grad()
    logits, _ = model(images)
    loss = vl.reconstruction_loss(logits, images)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _step_sigmoid_then_bce(model, optimizer, images):
    logits, _ = model(images)
    probabilities = torch.sigmoid(logits)
    targets = images.reshape(images.shape[0], 784)
    loss = F.binary_cross_entropy(probabilities, targets, reduction="sum") / images.shape[0]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_per_image_mean(model, optimizer, images):
    optimizer.zero_grad(set_to_none=False)
    logits, _ = model(images)
    per_image = _bce(logits, images, reduction="none").sum(dim=1)
    loss = per_image.mean()
    loss.backward()
    optimizer.step()
    return loss.detach().item()


def _step_eval_then_train(model, optimizer, images):
    model.train()
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images).div(images.size(0))
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        model(images)  # a look at the model after the step
    model.train()
    return loss.item()


CORRECT = {
    "lesson": _step_lesson,
    "model_zero_grad_reconstruction_loss_float": _step_model_zero_grad_train,
    "sigmoid_then_bce_zero_grad_after_forward": _step_sigmoid_then_bce,
    "per_image_sum_then_mean_set_to_none_false": _step_per_image_mean,
    "eval_then_train_again": _step_eval_then_train,
    "reference": vl.train_step,
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_training_step_passes(name):
    result = check_training_step(CORRECT[name])
    assert result.passed, str(result)


# ----------------------------------------------------------------------------------------------
# Wrong steps


def _no_zero_grad(model, optimizer, images):
    logits, _ = model(images)
    loss = _bce(logits, images) / len(images)
    loss.backward()
    optimizer.step()
    return loss.item()


def _no_step(model, optimizer, images):
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images) / len(images)
    loss.backward()
    return loss.item()


def _step_before_backward(model, optimizer, images):
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images) / len(images)
    optimizer.step()
    loss.backward()
    return loss.item()


def _step_then_zero_grad_then_backward(model, optimizer, images):
    optimizer.step()  # follows the previous call's gradient
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images) / len(images)
    loss.backward()
    return loss.item()


def _summed(model, optimizer, images):
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images)
    loss.backward()
    optimizer.step()
    return loss.item()


def _summed_but_mean_returned(model, optimizer, images):
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images)
    loss.backward()
    optimizer.step()
    return loss.item() / len(images)


def _pixel_mean(model, optimizer, images):
    optimizer.zero_grad()
    loss = F.binary_cross_entropy_with_logits(model(images)[0], images.view(len(images), -1))
    loss.backward()
    optimizer.step()
    return loss.item()


def _returns_tensor(model, optimizer, images):
    optimizer.zero_grad()
    loss = _bce(model(images)[0], images) / len(images)
    loss.backward()
    optimizer.step()
    return loss


def _returns_nothing(model, optimizer, images):
    _step_lesson(model, optimizer, images)


def _leaves_eval(model, optimizer, images):
    loss = _step_lesson(model, optimizer, images)
    model.eval()
    return loss


def _mse(model, optimizer, images):
    optimizer.zero_grad()
    logits, _ = model(images)
    loss = F.mse_loss(torch.sigmoid(logits), images.view(len(images), -1), reduction="sum") / len(images)
    loss.backward()
    optimizer.step()
    return loss.item()


def _right_value_wrong_update(model, optimizer, images):
    optimizer.zero_grad()
    logits, _ = model(images)
    loss = _bce(logits, images) / len(images)
    (loss + (logits ** 2).mean()).backward()  # trains on something else than it reports
    optimizer.step()
    return loss.item()


MISTAKES = [
    ("15", _no_zero_grad, "no_zero_grad", "gradients pile up"),
    ("15", _no_step, "no_step", "optimizer.step() is never called"),
    ("15", _step_before_backward, "step_before_backward", "before loss.backward()"),
    ("15", _step_then_zero_grad_then_backward, "step_before_backward", "previous batch's gradient"),
    ("15", _summed, "loss_summed_over_batch", "6 times the reference"),
    ("15", _summed_but_mean_returned, "loss_summed_over_batch", "summed over the batch"),
    ("extra", _pixel_mean, "loss_mean_over_pixels", "784 times smaller"),
    ("15", _returns_tensor, "returns_tensor", "a Python float"),
    ("extra", _returns_nothing, "returns_none", "returns None"),
    ("extra", lambda model, optimizer, images: (_step_lesson(model, optimizer, images), None), "returns_wrong_type",
     "type tuple"),
    ("15", _leaves_eval, "leaves_eval_mode", "evaluation mode"),
    ("extra", _mse, "wrong_loss_value", "nats per image"),
    ("extra", _right_value_wrong_update, "wrong_update", "After call 1"),
]


@pytest.mark.parametrize("issue, fn, diagnosis, phrase", MISTAKES, ids=[f"{m[2]}-{m[1].__name__}" for m in MISTAKES])
def test_training_step_mistake_is_named(issue, fn, diagnosis, phrase):
    assert_fails(check_training_step(fn), diagnosis, phrase)


def test_unpacking_forgotten_explains_the_error():
    def step(model, optimizer, images):
        optimizer.zero_grad()
        logits = model(images)
        loss = _bce(logits, images) / len(images)
        loss.backward()
        optimizer.step()
        return loss.item()

    result = check_training_step(step)
    assert result.status == "error" and "logits, z = model(images)" in result.hint


def test_unpacking_forgotten_before_a_bce_explains_the_error():
    def step(model, optimizer, images):
        optimizer.zero_grad()
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, images.flatten(1), reduction="sum") / len(images)
        loss.backward()
        optimizer.step()
        return loss.item()

    result = check_training_step(step)
    assert result.status == "error" and "logits, z = model(images)" in result.hint


def test_images_not_flattened_explains_the_error():
    def step(model, optimizer, images):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(images)[0], images, reduction="sum") / len(images)
        loss.backward()
        optimizer.step()
        return loss.item()

    result = check_training_step(step)
    assert result.status == "error" and "images.view(len(images), -1)" in result.hint


def test_no_grad_step_explains_the_error():
    def step(model, optimizer, images):
        optimizer.zero_grad()
        with torch.no_grad():
            loss = _bce(model(images)[0], images) / len(images)
        loss.backward()
        optimizer.step()
        return loss.item()

    result = check_training_step(step)
    assert result.status == "error" and "torch.no_grad()" in result.hint


def test_reference_step_trains_a_module_without_a_loss_method():
    """vl.train_step, the fallback of lesson 1, takes the student's own autoencoder (forward -> (logits, z))."""
    torch.manual_seed(0)
    course = vl.Autoencoder(latent_dim=2, hidden_dim=8)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = course

        def forward(self, images):
            return self.inner(images)

    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain = Plain()
    expected = vl.reconstruction_loss(course(images)[0], images).item()
    loss = vl.train_step(plain, torch.optim.SGD(plain.parameters(), lr=1e-3), images)
    assert isinstance(loss, float) and abs(loss - expected) < 1e-4 * expected
    assert vl.reconstruction_loss(course(images)[0], images).item() < expected  # the step went downhill


def test_check_works_inside_no_grad_and_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    with torch.no_grad():
        result = check_training_step(_step_lesson)
        assert not torch.is_grad_enabled()  # the caller's mode, put back
    assert result.passed, str(result)
    assert torch.equal(torch.get_rng_state(), state)
