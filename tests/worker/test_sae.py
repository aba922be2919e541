"""Invariants of the TopK SAE, its trainer and its files, on tiny tensors (docs/method.md §1.4)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from worker.metrics.reconstruction import dead_fraction, fire_counts, fvu, l0
from worker.sae.io import load_sae, load_sae_config, save_sae
from worker.sae.model import TopKSAE
from worker.sae.train import (
    SAEConfig,
    SAETrainer,
    _Checkpoint,
    _update_front,
    aux_loss,
    encode_batched,
    init_sae,
    paired_tolerance,
    remove_parallel_grad,
    train_sae,
)

torch.set_num_threads(1)


def planted(n: int, d: int = 16, atoms: int = 24, active: int = 3, seed: int = 0) -> np.ndarray:
    """[n, d] vectors that are sums of ``active`` random atoms (positive coefficients) + offset:
    the data a TopK SAE with enough latents and k >= active can explain almost entirely. The
    dictionary is the same for every ``seed``; only the samples change."""
    dictionary = np.random.default_rng(1234).normal(size=(atoms, d))
    rng = np.random.default_rng(seed)
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    x = np.zeros((n, d))
    for row in x:
        chosen = rng.choice(atoms, size=active, replace=False)
        row += rng.uniform(0.5, 2.0, size=active) @ dictionary[chosen]
    return (x + 3.0).astype(np.float32)


FAST = SAEConfig(scale=4, k=4, lr=3e-3, batch_size=256, max_epochs=40, patience=40)


def test_encode_keeps_exactly_k_non_negative_latents() -> None:
    sae = TopKSAE(8, 32, 5, seed=1)
    x = torch.randn(20, 8)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            idx, val = sae.encode(x)
        assert idx.shape == val.shape == (20, 5) and idx.dtype == torch.int64
        assert all(len(set(row.tolist())) == 5 for row in idx)  # k distinct latents
        assert (val >= 0).all()
        expected = torch.relu(sae.pre_acts(x).topk(5, dim=-1).values).sort(-1).values
        torch.testing.assert_close(val.sort(-1).values, expected.detach())
    dense = sae.encode_dense(x)
    assert ((dense != 0).sum(-1) <= 5).all() and (dense >= 0).all()


def test_negative_kept_values_become_zero() -> None:
    sae = TopKSAE(4, 6, 6, seed=0)  # k = n: every latent kept, so negative pre-acts are too
    x = torch.randn(10, 4)
    _, val = sae.encode(x)
    assert (val == 0).sum() > 0 and (val >= 0).all()
    assert l0(val.detach().numpy()) < 6


def test_sparse_decode_equals_dense_decode() -> None:
    sae = TopKSAE(8, 32, 4, b_dec=torch.randn(8), seed=2)
    x = torch.randn(12, 8)
    with torch.no_grad():
        idx, val = sae.encode(x)
        torch.testing.assert_close(sae.decode_sparse(idx, val), sae.decode(sae.encode_dense(x)))
        torch.testing.assert_close(sae(x), sae.decode(sae.encode_dense(x)))
        no_bias = sae.decode_sparse(idx, val, with_bias=False)
        torch.testing.assert_close(no_bias + sae.b_dec, sae.decode_sparse(idx, val))


def test_init_decoder_is_normalised_encoder_transpose_and_b_dec_is_mean() -> None:
    x = torch.as_tensor(planted(100, d=8))
    sae = init_sae(x, replace(FAST, scale=2))
    assert sae.W_enc.shape == (8, 16) and sae.W_dec.shape == (16, 8)
    w_t = sae.W_enc.detach().T
    torch.testing.assert_close(sae.W_dec.detach(), w_t / w_t.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(16))
    torch.testing.assert_close(sae.b_dec.detach(), x.mean(0))
    assert not sae.b_enc.any() and "b_enc" not in dict(sae.named_parameters())


def test_training_step_keeps_decoder_rows_unit_norm() -> None:
    x = torch.as_tensor(planted(64, d=8))
    sae = init_sae(x, replace(FAST, scale=2))
    trainer = SAETrainer(sae, FAST, x_var=float(x.var(0).sum()), dead_window=1)
    for _ in range(3):
        trainer.step(x)
        torch.testing.assert_close(sae.W_dec.detach().norm(dim=-1), torch.ones(16))


def test_parallel_gradient_component_is_removed() -> None:
    sae = TopKSAE(6, 12, 3, seed=0)
    grad = torch.randn(12, 6)
    sae.W_dec.grad = grad.clone()
    remove_parallel_grad(sae)
    w = sae.W_dec.detach()
    torch.testing.assert_close((sae.W_dec.grad * w).sum(-1), torch.zeros(12), atol=1e-6, rtol=0)
    # what is left is the perpendicular part, untouched
    torch.testing.assert_close(sae.W_dec.grad, grad - (grad * w).sum(-1, keepdim=True) * w)


def _aux_grads(dead: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sae = TopKSAE(8, 24, 2, b_dec=torch.randn(8), seed=3)
    x = torch.randn(30, 8)
    with torch.no_grad():
        residual = x - sae(x)
        pre = sae.pre_acts(x)
    loss = aux_loss(sae, x, pre, residual, dead, k_aux=4, x_var=1.0)
    if loss.requires_grad:
        loss.backward()
    zeros = (torch.zeros_like(sae.W_enc), torch.zeros_like(sae.W_dec))
    w_enc_grad = sae.W_enc.grad if sae.W_enc.grad is not None else zeros[0]
    w_dec_grad = sae.W_dec.grad if sae.W_dec.grad is not None else zeros[1]
    return loss.detach(), w_enc_grad, w_dec_grad


def test_aux_loss_is_zero_when_no_latent_is_dead() -> None:
    loss, w_enc_grad, w_dec_grad = _aux_grads(torch.zeros(24, dtype=torch.bool))
    assert float(loss) == 0.0 and not w_enc_grad.any() and not w_dec_grad.any()


def test_aux_loss_touches_only_dead_latents() -> None:
    dead = torch.zeros(24, dtype=torch.bool)
    dead[[1, 5, 7, 11, 20]] = True
    loss, w_enc_grad, w_dec_grad = _aux_grads(dead)
    assert float(loss) > 0
    assert not w_dec_grad[~dead].any() and not w_enc_grad[:, ~dead].any()
    assert w_dec_grad[dead].abs().sum() > 0 and w_enc_grad[:, dead].abs().sum() > 0


def _gathered_aux_loss(
    sae: TopKSAE, x: torch.Tensor, pre: torch.Tensor, residual: torch.Tensor, dead: torch.Tensor
) -> torch.Tensor:
    """AuxK as it was before issue 12: k_aux encoder columns and decoder rows gathered per input."""
    dead_idx = dead.nonzero().squeeze(-1)
    idx = dead_idx[pre.index_select(1, dead_idx).topk(4, dim=-1, sorted=False).indices]
    e_hat = sae.decode_sparse(idx, torch.relu(sae.pre_acts_at(x, idx)), with_bias=False)
    return ((residual - e_hat) ** 2).sum(-1).mean()


def test_aux_loss_dense_over_dead_columns_equals_the_gathered_form() -> None:
    """The speed change (dense products over the dead columns) keeps the loss and gradients."""
    dead = torch.zeros(24, dtype=torch.bool)
    dead[[0, 2, 3, 9, 13, 17, 22]] = True
    grads = []
    for fn in (lambda *a: aux_loss(*a, k_aux=4, x_var=1.0), _gathered_aux_loss):
        sae = TopKSAE(8, 24, 2, b_dec=torch.randn(8, generator=torch.Generator().manual_seed(1)))
        x = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            residual, pre = x - sae(x), sae.pre_acts(x)
        loss = fn(sae, x, pre, residual, dead)
        loss.backward()
        grads.append((loss.detach(), sae.W_enc.grad, sae.W_dec.grad, sae.b_dec.grad))
    for ours, reference in zip(*grads, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_dead_counter_counts_inputs_since_last_firing() -> None:
    x = torch.as_tensor(planted(1, d=8)).repeat(50, 1)  # one input 50 times: only k can fire
    sae = init_sae(torch.as_tensor(planted(50, d=8)), replace(FAST, scale=4))
    trainer = SAETrainer(sae, FAST, x_var=1.0, dead_window=100)
    trainer.inputs_since_fired_N += 60  # as if 60 inputs had passed with nothing firing
    with torch.no_grad():
        idx, val = sae.encode(x[:1])  # the selection the step will make
    trainer.step(x)
    fired = set(idx[val > 0].tolist())
    counts = trainer.inputs_since_fired_N
    assert {i for i in range(32) if counts[i] == 0} == fired and 0 < len(fired) <= 4
    assert all(counts[i] == 110 for i in range(32) if i not in fired)
    assert trainer.dead_mask().sum() == 32 - len(fired)


def test_training_on_planted_dictionary_reaches_low_fvu() -> None:
    x = planted(3000, seed=0)
    x_dev = planted(300, seed=1)
    config = replace(FAST, scale=4, batch_size=128, max_epochs=30)
    sae, report = train_sae(x, x_dev, config, progress=False)
    assert report["fvu_dev"] < 0.1, report["fvu_dev"]
    assert report["fvu_train"] < 0.1
    assert report["l0"] <= 4 and 0.0 <= report["dead_fraction"] <= 1.0
    assert report["vectors_per_second"] > 0 and report["steps"] >= report["epochs"]
    assert 1 <= report["best_epoch"] <= report["epochs"]
    random_fvu = fvu(x_dev, encode_batched(TopKSAE(16, 64, 4, torch.tensor(x.mean(0))), x_dev)[2])
    assert report["fvu_dev"] < random_fvu / 3


def test_training_is_deterministic_given_the_seed() -> None:
    x, x_dev = planted(400), planted(100, seed=1)
    config = replace(FAST, max_epochs=3)
    a, report_a = train_sae(x, x_dev, config, progress=False)
    b, report_b = train_sae(x, x_dev, config, progress=False)
    c, _ = train_sae(x, x_dev, replace(config, seed=1), progress=False)
    for name in ("W_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.W_enc, c.W_enc)
    assert report_a["fvu_dev"] == report_b["fvu_dev"]


def test_max_steps_and_patience_stop_training() -> None:
    x, x_dev = planted(400), planted(100, seed=1)
    _, report = train_sae(x, x_dev, replace(FAST, max_steps=5), progress=False)
    assert report["steps"] == 5 and report["epochs"] == 3  # 256 + 144 per epoch
    _, report = train_sae(x, x_dev, replace(FAST, lr=1e-9, patience=2), progress=False)
    assert report["epochs"] < FAST.max_epochs


def test_dev_score_vetoes_checkpoints_outside_the_tolerance() -> None:
    def ck(epoch: int, fvu_dev: float, score: float) -> _Checkpoint:
        return _Checkpoint(epoch, fvu_dev, score, {})

    front: list[_Checkpoint] = []
    best = float("-inf")
    for c in (ck(1, 0.50, 0.300), ck(2, 0.40, 0.200), ck(3, 0.45, 0.299), ck(4, 0.47, 0.250)):
        best = max(best, c.score)
        front = _update_front(front, c, best, tol=0.005)
    winner = min(front, key=lambda c: c.fvu_dev)
    assert winner.epoch == 3  # lowest FVU among scores >= 0.295; epoch 2 is vetoed
    assert {c.epoch for c in front} == {1, 3}


def test_train_sae_uses_dev_score() -> None:
    x, x_dev = planted(400), planted(100, seed=1)
    calls: list[int] = []

    def score(sae: TopKSAE) -> float:
        calls.append(1)
        return -float(len(calls))  # the first evaluation is the best by score

    fixed = replace(FAST, max_epochs=5, score_tolerance=0.005)
    _, report = train_sae(x, x_dev, fixed, dev_score_fn=score, progress=False)
    assert len(calls) == 5 and report["best_epoch"] == 1 and report["dev_score"] == -1.0
    assert (report["veto"], report["score_tolerance"]) == ("fixed", 0.005)
    assert report["vetoed_lower_fvu"] >= 1  # later epochs fit better but score worse
    with pytest.raises(ValueError, match="per-case scores"):
        train_sae(x, x_dev, replace(FAST, max_epochs=2), dev_score_fn=score, progress=False)


def test_paired_veto_can_veto_where_the_base_ci_never_did() -> None:
    """Issue 9 finding 5: the old tolerance (the base model's dev CI half-width) exceeded
    BPRMF's dev NDCG, so no checkpoint was ever vetoed. The paired tolerance is the 95%
    half-width of the per-case difference to the best checkpoint."""
    rng = np.random.default_rng(0)
    n = 200
    best = np.where(rng.random(n) < 0.1, 0.4, 0.0)  # 10% of users hit: mean ~0.04
    base_ci = 1.96 * best.std() / np.sqrt(n)
    same = best.copy()
    swapped = np.roll(best, 1)  # as many hits, on other users: same mean, noisy difference
    lost = best.copy()
    lost[np.flatnonzero(best)[::3]] = 0.0  # a third of the hits gone
    assert paired_tolerance(best, same) == 0.0
    assert paired_tolerance(best, swapped) > abs(best.mean() - swapped.mean())  # not vetoed
    assert best.mean() - lost.mean() > paired_tolerance(best, lost)  # vetoed ...
    assert best.mean() - lost.mean() < base_ci  # ... where the old tolerance let it through

    def ck(epoch: int, fvu_dev: float, per_case: np.ndarray) -> _Checkpoint:
        return _Checkpoint(epoch, fvu_dev, float(per_case.mean()), {}, per_case)

    front: list[_Checkpoint] = []
    for c in (ck(1, 0.5, best), ck(2, 0.3, lost), ck(3, 0.4, swapped)):
        front = _update_front(front, c, float(best.mean()), None, best)
    assert min(front, key=lambda c: c.fvu_dev).epoch == 3  # epoch 2's lower FVU is vetoed


def test_train_sae_with_per_case_scores_reports_the_paired_veto() -> None:
    x, x_dev = planted(400), planted(100, seed=1)
    calls: list[int] = []

    def score(sae: TopKSAE) -> np.ndarray:
        calls.append(1)
        per_case = np.zeros(50)
        per_case[: max(0, 30 - 6 * len(calls))] = 1.0  # every epoch loses 6 of 50 hits
        return per_case

    _, report = train_sae(x, x_dev, replace(FAST, max_epochs=5), dev_score_fn=score, progress=False)
    assert report["veto"] == "paired" and report["dev_score"] == pytest.approx(24 / 50)
    assert report["best_epoch"] <= 2 and report["score_tolerance"] >= 0.0


def test_bad_inputs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="x_dev has d=3"):
        train_sae(planted(10, d=4), np.zeros((5, 3), np.float32), FAST, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_sae(np.full((10, 4), np.nan, np.float32), planted(5, d=4), FAST, progress=False)
    with pytest.raises(ValueError, match="k must be"):
        TopKSAE(4, 8, 9)


def test_save_load_round_trip_with_saelens_names(tmp_path) -> None:
    x = planted(200, d=8)
    sae, _ = train_sae(x, planted(50, d=8, seed=1), replace(FAST, max_epochs=2), progress=False)
    save_sae(sae, FAST, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["architecture"]) == (8, 32, 4, "topk")
    tensors = load_file(tmp_path / "sae" / "sae_weights.safetensors")
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "W_enc": (8, 32),
        "b_enc": (32,),
        "W_dec": (32, 8),
        "b_dec": (8,),
    }
    loaded = load_sae(tmp_path / "sae")
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.as_tensor(x)), sae(torch.as_tensor(x)))
    assert load_sae_config(tmp_path / "sae") == FAST
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "missing")


def test_reconstruction_metrics_by_hand() -> None:
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    # variance around the mean (1, 1): 4 rows x 2 = 8
    assert fvu(x, x) == 0.0
    assert fvu(x, np.ones_like(x)) == pytest.approx(1.0)
    assert fvu(x, x + 0.5) == pytest.approx(8 * 0.25 / 8)
    assert fvu(torch.as_tensor(x), torch.as_tensor(x + 0.5)) == pytest.approx(0.25)
    counts = fire_counts(np.array([[0, 2], [2, 3]]), np.array([[1.0, 0.0], [0.5, 2.0]]), 5)
    assert counts.tolist() == [1, 0, 1, 1, 0]
    assert dead_fraction(counts) == pytest.approx(0.4)
    assert l0(np.array([[1.0, 0.0], [0.5, 2.0]])) == 1.5
    with pytest.raises(ValueError, match="zero variance"):
        fvu(np.ones((3, 2)), np.ones((3, 2)))
