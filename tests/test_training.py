import math

import pytest
import torch
import torch.nn.functional as F

from vae_lesson import VAE, Autoencoder, LossTerms, evaluate, train, train_step
from vae_lesson.data import iterate_batches, offline_sample
from vae_lesson import speedups
from vae_lesson.speedups import Speedups, zero_subnormal_moments

TRAIN_KEYS = ["epoch", "train_loss", "train_reconstruction", "train_kl"]
TEST_KEYS = ["test_loss", "test_reconstruction", "test_kl"]


@pytest.fixture(scope="module")
def digits():
    """1,000 training and 200 test digits from the offline sample (real MNIST, no download)."""
    train_images, train_labels = offline_sample("train")
    test_images, _ = offline_sample("test")
    return (train_images[:1000], train_labels[:1000]), test_images[:200]


def tiny(cls=VAE, seed=0):
    torch.manual_seed(seed)
    return cls(latent_dim=2, hidden_dim=16)


def run(digits, seed=0, epochs=2, **kwargs):
    model = tiny()
    history = train(model, digits[0], digits[1], epochs=epochs, seed=seed, progress=False, **kwargs)
    return model, history


def test_same_seed_gives_an_identical_history_and_model(digits):
    model_a, history_a = run(digits, seed=0)
    model_b, history_b = run(digits, seed=0)
    assert history_a == history_b
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_matches_a_plain_loop_with_the_default_adam(digits):
    """The trainer's fused Adam is an implementation detail: the same steps with torch's default
    (per-tensor) Adam, written out as the usual loop, end at the same weights up to float rounding."""
    model, history = run(digits, seed=0, epochs=2, batch_size=100)
    reference = tiny()
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3, foreach=False, fused=False)
    shuffle, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)  # as train() seeds them
    images = digits[0][0]
    for _ in range(2):
        for (batch,) in iterate_batches(images, batch_size=100, generator=shuffle):
            loss = reference.loss(batch, generator=noise).total
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)
    assert history["test_loss"][-1] == pytest.approx(evaluate(reference, digits[1]).total, rel=1e-4)


def test_different_seed_gives_a_different_history(digits):
    _, history_a = run(digits, seed=0)
    _, history_b = run(digits, seed=1)
    assert history_a["train_loss"] != history_b["train_loss"]


def test_history_keys_and_lengths(digits):
    _, history = run(digits, epochs=3)
    assert list(history) == TRAIN_KEYS + TEST_KEYS
    assert history["epoch"] == [1, 2, 3]
    assert all(len(values) == 3 for values in history.values())
    history = train(tiny(), digits[0][0], epochs=1, progress=False)
    assert list(history) == TRAIN_KEYS


def test_loss_decreases(digits):
    model = tiny()
    before = evaluate(model, digits[1])
    _, history = run(digits, epochs=3)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["test_loss"][-1] < history["test_loss"][0] < before.total
    assert all(math.isfinite(v) for values in history.values() for v in values)


def test_history_terms_add_up_with_beta(digits):
    _, history = run(digits, beta=0.5)
    for split in ("train", "test"):
        for total, reconstruction, kl in zip(history[f"{split}_loss"], history[f"{split}_reconstruction"],
                                             history[f"{split}_kl"]):
            assert total == pytest.approx(reconstruction + 0.5 * kl, rel=1e-6)  # float32 batch terms
            assert kl > 0


def test_autoencoder_trains_with_the_same_loop(digits):
    model = tiny(Autoencoder)
    history = train(model, digits[0], digits[1], epochs=2, progress=False)
    assert history["train_kl"] == [0.0, 0.0]
    assert history["train_loss"] == history["train_reconstruction"]
    assert history["train_loss"][1] < history["train_loss"][0]


def test_nan_loss_stops_training_naming_the_epoch_and_batch(digits, monkeypatch):
    model = tiny()
    real_loss = model.loss
    calls = []
    n_batches = math.ceil(1000 / 128)  # 8 batches per epoch

    def loss_that_breaks(images, beta=1.0, generator=None):
        calls.append(1)
        terms = real_loss(images, beta=beta, generator=generator)
        if len(calls) == n_batches + 3:  # epoch 2, batch 3
            return LossTerms(terms.total * float("nan"), terms.reconstruction, terms.kl)
        return terms

    monkeypatch.setattr(model, "loss", loss_that_breaks)
    with pytest.raises(FloatingPointError, match="epoch 2, batch 3"):
        train(model, digits[0], epochs=3, progress=False)


def test_a_huge_learning_rate_is_caught_not_trained_through(digits):
    with pytest.raises(FloatingPointError, match=r"at epoch \d+, batch \d+"):
        train(tiny(), digits[0], epochs=5, lr=1e6, progress=False)


def test_evaluate_is_deterministic_and_leaves_the_model_alone(digits):
    model = tiny()
    model.train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    first = evaluate(model, digits[1])
    assert isinstance(first, LossTerms) and all(isinstance(v, float) for v in first)
    assert evaluate(model, digits[1]) == first
    assert evaluate(model, digits[1], seed=1) != first  # the VAE's noise comes from the seed
    assert model.training
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_evaluate_averages_per_image_over_uneven_batches(digits):
    # 250 images in batches of 100, 100 and 50: a plain mean of batch means would be wrong.
    model = tiny(Autoencoder)
    images = digits[1][:200].repeat(2, 1, 1, 1)[:250]
    result = evaluate(model, images, batch_size=100)
    with torch.no_grad():
        probabilities = model.decode(model.encode(images))
    # The lecture's formula over the whole set at once: BCE on probabilities, summed, per image.
    expected = F.binary_cross_entropy(probabilities, images, reduction="sum").item() / 250
    assert result.total == pytest.approx(expected, rel=1e-5)
    assert result.kl == 0.0


def _learning_rates_used(monkeypatch, digits, **kwargs):
    """Train and record the learning rate of every Adam step, as the optimizer saw it."""
    used = []
    real_step = torch.optim.Adam.step

    def recording_step(self, *args, **kw):
        used.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    run(digits, **kwargs)
    return used


def test_constant_schedule_keeps_the_learning_rate(monkeypatch, digits):
    used = _learning_rates_used(monkeypatch, digits, epochs=2, batch_size=128, lr=2e-3)
    assert used == [2e-3] * (2 * 8)  # 1,000 images in batches of 128: 8 steps an epoch


def test_cosine_schedule_follows_the_closed_form(monkeypatch, digits):
    # Step t of T uses lr * (1 + cos(pi * t / T)) / 2: lr at the first step, falling to near 0 at the last.
    used = _learning_rates_used(monkeypatch, digits, epochs=3, batch_size=128, lr=2e-3, lr_schedule="cosine")
    total = 3 * 8
    expected = [2e-3 * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)]
    assert used == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert used[-1] < 2e-3 * 0.01


def test_cosine_schedule_changes_the_result_and_stays_reproducible(digits):
    _, constant = run(digits, epochs=2)
    _, cosine = run(digits, epochs=2, lr_schedule="cosine")
    _, cosine_again = run(digits, epochs=2, lr_schedule="cosine")
    assert cosine == cosine_again
    assert cosine["train_loss"] != constant["train_loss"]


def test_the_progress_bar_redraws_at_most_once_a_second(monkeypatch, digits):
    # Ten redraws a second (tqdm's default) over a 2-minute notebook cell flooded the kernel's output
    # channel with widget messages and made nbval time out waiting for the cell's end.
    bars = []

    def recording_tqdm(*args, **kwargs):
        bars.append(real_tqdm(*args, **kwargs))
        return bars[-1]

    real_tqdm = speedups.tqdm
    monkeypatch.setattr(speedups, "tqdm", recording_tqdm)
    train(tiny(), digits[0], epochs=1, progress=True)
    assert len(bars) == 1 and bars[0].mininterval >= 1.0


def test_bad_arguments_raise(digits):
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        train(tiny(), digits[0], epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \('constant', 'cosine'\), got 'linear'"):
        train(tiny(), digits[0], epochs=1, lr_schedule="linear", progress=False)
    with pytest.raises(TypeError, match="train_data must be an images tensor"):
        train(tiny(), [[0.0] * 784], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\) or \(N, 784\)"):
        train(tiny(), torch.rand(10, 28, 28), epochs=1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; the course runs on the CPU by default")
def test_train_and_evaluate_on_cuda(digits):
    model = tiny()
    history = train(model, digits[0], digits[1], epochs=2, device="cuda", progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert history["test_loss"][-1] < history["test_loss"][0]
    assert evaluate(model, digits[1]) == evaluate(model, digits[1])
    # Same seed on the same device: the same history.
    assert train(tiny(), digits[0], digits[1], epochs=2, device="cuda", progress=False) == history


def _adam_after_a_unit_falls_silent(sweep_every=None):
    """Fused Adam (as train() uses it on a CPU) on a 4-weight "unit": one step with gradients, then
    1,500 steps with none, as for a ReLU unit that has stopped firing."""
    weight = torch.nn.Parameter(torch.full((4,), 0.5))
    optimizer = torch.optim.Adam([weight], lr=1e-3, fused=True)
    first = torch.tensor([1e-3, -2e-3, 3e-3, 0.0])
    for step in range(1, 1502):
        weight.grad = first.clone() if step == 1 else torch.zeros(4)
        optimizer.step()
        if sweep_every and step % sweep_every == 0:
            zero_subnormal_moments(optimizer)
    return weight.detach(), optimizer.state[weight]["exp_avg"]


def test_a_silent_unit_leaves_subnormal_numbers_in_adams_state():
    # In exact arithmetic 0.9 ** 1500 * 1e-4 is ~1e-73; in float32 the running mean sinks into the
    # subnormal range (below ~1.2e-38) and stays there, since 0.9 times its smallest values rounds back.
    _, exp_avg = _adam_after_a_unit_falls_silent()
    tiny_normal = torch.finfo(torch.float32).tiny
    assert (exp_avg[:3] != 0).all() and (exp_avg[:3].abs() < tiny_normal).all()
    assert exp_avg[3] == 0  # never had a gradient: exactly zero all along


def test_zeroing_subnormal_moments_clears_them_and_moves_no_weight():
    weight, exp_avg = _adam_after_a_unit_falls_silent()
    swept_weight, swept_exp_avg = _adam_after_a_unit_falls_silent(sweep_every=32)
    assert torch.equal(swept_exp_avg, torch.zeros(4))
    assert torch.equal(swept_weight, weight)  # bit for bit


def test_zero_subnormal_moments_leaves_normal_numbers_alone():
    weight = torch.nn.Parameter(torch.zeros(6, dtype=torch.float64))
    optimizer = torch.optim.Adam([weight])
    tiny64 = torch.finfo(torch.float64).tiny
    values = torch.tensor([tiny64, -tiny64, tiny64 / 4, -tiny64 / 1e6, 0.0, 1.5], dtype=torch.float64)
    optimizer.state[weight] = {"exp_avg": values.clone(), "step": torch.tensor(3.0)}
    assert zero_subnormal_moments(optimizer) == 2
    expected = torch.tensor([tiny64, -tiny64, 0.0, 0.0, 0.0, 1.5], dtype=torch.float64)
    assert torch.equal(optimizer.state[weight]["exp_avg"], expected)
    assert optimizer.state[weight]["step"] == 3.0


def test_train_clears_subnormal_moments_every_interval_on_the_cpu(monkeypatch, digits):
    calls = []
    monkeypatch.setattr(speedups, "zero_subnormal_moments", lambda optimizer: calls.append(optimizer))
    train(tiny(), digits[0], epochs=2, batch_size=128, progress=False, speedups=Speedups(subnormal_sweep_every=4))
    assert len(calls) == 4  # 2 epochs x 8 batches of 1,000 images, every 4th batch
    assert all(isinstance(optimizer, torch.optim.Adam) for optimizer in calls)


def test_train_step_is_the_four_usual_lines(digits):
    """zero_grad, loss, backward, step: the same weights as those lines written out, and the loss as a float."""
    images = digits[0][0][:64]
    model, reference = tiny(), tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    reference_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    for step in range(3):
        loss = train_step(model, optimizer, images, beta=0.5, generator=torch.Generator().manual_seed(step))
        reference_optimizer.zero_grad()
        expected = reference.loss(images, beta=0.5, generator=torch.Generator().manual_seed(step))
        expected.total.backward()
        reference_optimizer.step()
        assert isinstance(loss, float) and loss == expected.total.item()
        assert (loss.reconstruction, loss.kl) == (expected.reconstruction.item(), expected.kl.item())
    for (name, ours), theirs in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name


def test_the_per_epoch_callback_sees_each_epoch_after_its_test_pass(digits):
    seen = []
    history = train(tiny(), digits[0], digits[1], epochs=3, progress=False,
                    on_epoch_end=lambda epoch, history: seen.append((epoch, len(history["test_loss"]))))
    assert seen == [(1, 1), (2, 2), (3, 3)]
    assert len(history["epoch"]) == 3


def test_the_speedups_change_no_weight(digits):
    """Fused Adam and the subnormal sweep are engineering: with both off, the same steps reach the same
    weights (up to the order of float additions inside Adam), and the sweep alone moves nothing."""
    model, history = run(digits, epochs=2)
    swept_never = tiny()
    assert train(swept_never, digits[0], digits[1], epochs=2, progress=False,
                 speedups=Speedups(subnormal_sweep_every=None)) == history
    plain = tiny()
    train(plain, digits[0], epochs=2, progress=False, speedups=Speedups(fused_adam=False, subnormal_sweep_every=None))
    for (name, ours), never, theirs in zip(model.state_dict().items(), swept_never.state_dict().values(),
                                           plain.state_dict().values()):
        assert torch.equal(ours, never), name
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)
