"""SASRec's dropout masks are drawn with the batch, and the batches are drawn ahead on a thread
(docs/method.md §1.2): training must be the same, bit for bit, as with everything drawn inline."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worker.data.dataset import Dataset
from worker.prefetch import prefetched
from worker.recommenders.sasrec import attention_with_dropout, dropout_noise
from worker.recommenders.train import build_recommender, default_config, train_epoch


@pytest.fixture(scope="module")
def sequences() -> Dataset:
    """20 users with 8-40 items each over 50 items, seeded (windows of 20 get left padding)."""
    rng = np.random.default_rng(3)
    seqs = [rng.choice(50, size=int(rng.integers(8, 41)), replace=False) for _ in range(20)]
    return Dataset(
        name="seq",
        user_ids=[str(u) for u in range(len(seqs))],
        item_ids=[str(i) for i in range(50)],
        sequences=[s.astype(np.int64) for s in seqs],
        timestamps=[np.arange(len(s)) for s in seqs],
        item_title=[f"item {i}" for i in range(50)],
        item_genres=[[] for _ in range(50)],
        item_tags=[[] for _ in range(50)],
        item_text=["" for _ in range(50)],
    )


def test_dropout_noise_is_torch_dropout() -> None:
    x = torch.randn(6, 20, 16)
    torch.manual_seed(5)
    expected = F.dropout(x, 0.3, training=True)
    torch.manual_seed(5)
    assert torch.equal(x * dropout_noise(tuple(x.shape), 0.3), expected)


@pytest.mark.parametrize("heads", [1, 2])
def test_attention_with_dropout_is_torch_sdpa(heads: int) -> None:
    """Outputs and every gradient equal F.scaled_dot_product_attention's on the CPU."""
    gen = torch.Generator().manual_seed(0)
    B, L, d = 16, 20, 64 // heads
    q, k, v = (torch.randn(B, heads, L, d, generator=gen, requires_grad=True) for _ in range(3))
    valid = torch.rand(B, L, generator=gen) > 0.4
    allowed = (torch.ones(L, L, dtype=torch.bool).tril() & valid[:, None, :]) | torch.eye(
        L, dtype=torch.bool
    )
    allowed = allowed[:, None]
    torch.manual_seed(1)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=0.3)
    torch.manual_seed(1)
    noise = dropout_noise((B, heads, L, L), 0.3)
    bias = torch.where(allowed, 0.0, float("-inf"))
    got = attention_with_dropout(q, k, v, bias, noise)
    assert torch.equal(got, expected)
    grads_expected = torch.autograd.grad(expected.square().sum(), (q, k, v))
    grads_got = torch.autograd.grad(got.square().sum(), (q, k, v))
    for g, e in zip(grads_got, grads_expected, strict=True):
        assert torch.equal(g, e)


def _reference_encode(model, history_BL: torch.Tensor) -> torch.Tensor:
    """SASRec's forward as it was before the masks moved into the batch: torch's own dropout
    modules and ``F.scaled_dot_product_attention`` with ``dropout_p``."""
    B, L = history_BL.shape
    valid_BL = history_BL != model.n_items
    pos_L = torch.arange(L - 1, -1, -1)
    x = model.item_emb(history_BL) * model.config.emb_size**0.5 + model.pos_emb(pos_L)
    x = F.dropout(x, model.config.dropout, training=True) * valid_BL[..., None]
    allowed = (torch.ones(L, L, dtype=torch.bool).tril() & valid_BL[:, None, :]) | torch.eye(
        L, dtype=torch.bool
    )
    for block in model.blocks:
        h = block.attn_norm(x)
        q, k, v = block.qkv(h).view(B, L, 3, block.n_heads, -1).unbind(2)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=allowed[:, None], dropout_p=block.dropout,
        )  # fmt: skip
        x = h + block.out(att.transpose(1, 2).reshape(B, L, -1))
        x = (x + block.ffn(block.ffn_norm(x))) * valid_BL[..., None]
    return model.final_norm(x)


def _model(dataset: Dataset, n_layers: int = 1):
    config = default_config("sasrec", batch_size=8, threads=1, n_layers=n_layers)
    torch.manual_seed(0)
    model = build_recommender("sasrec", dataset.n_users, dataset.n_items, config)
    model.prepare(dataset)
    return model, config


@pytest.mark.parametrize("n_layers", [1, 2])
def test_masks_in_the_batch_train_as_torch_dropout(sequences: Dataset, n_layers: int) -> None:
    """The batch's masks, the forward's own masks and torch's dropout modules: the same hidden
    states and the same gradients, bit for bit, from the same generator state."""
    model, _ = _model(sequences, n_layers)
    model.train()
    torch.manual_seed(7)
    batch = next(iter(model.training_batches(sequences, np.random.default_rng(0))))
    assert sum(key.startswith("noise_") for key in batch) == 1 + 3 * n_layers
    history = batch["history"]
    outputs = {"batch": model.encode(history, batch)}
    torch.manual_seed(7)
    outputs["forward"] = model.encode(history)
    torch.manual_seed(7)
    outputs["reference"] = _reference_encode(model, history)
    grads = {}
    for how, out in outputs.items():
        grads[how] = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    for how in ("forward", "reference"):
        assert torch.equal(outputs[how], outputs["batch"]), how
        for g, e in zip(grads[how], grads["batch"], strict=True):
            assert torch.equal(g, e), how


def test_eval_mode_draws_no_masks(sequences: Dataset) -> None:
    model, _ = _model(sequences)
    model.eval()
    history = next(iter(model.training_batches(sequences, np.random.default_rng(0))))["history"]
    state = torch.get_rng_state()
    first = model.encode(history)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(model.encode(history), first)


def _train(dataset: Dataset, epochs: int, prefetch: bool) -> tuple[list[torch.Tensor], int, float]:
    model, config = _model(dataset)
    rng = np.random.default_rng(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for epoch in range(1, epochs + 1):
        if prefetch:
            train_epoch(model, optimizer, dataset, rng, epoch)  # the pipeline's: prefetched
            continue
        model.train()
        for batch in model.training_batches(dataset, rng):
            optimizer.zero_grad()
            model.loss(batch).backward()
            optimizer.step()
    weights = [t.clone() for t in model.state_dict().values()]
    return weights, int(rng.integers(0, 2**31)), float(torch.rand(()))


def test_prefetched_training_is_inline_training(sequences: Dataset) -> None:
    """Three epochs with the batches drawn on the producer thread: the same weights, and both
    generators left where inline training leaves them (later stages draw on)."""
    inline_w, inline_np, inline_torch = _train(sequences, 3, prefetch=False)
    pre_w, pre_np, pre_torch = _train(sequences, 3, prefetch=True)
    assert all(torch.equal(a, b) for a, b in zip(pre_w, inline_w, strict=True))
    assert (pre_np, pre_torch) == (inline_np, inline_torch)


def test_prefetched_keeps_order_and_raises_the_producers_error() -> None:
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise RuntimeError("bad batch 2")

    got = []
    with pytest.raises(RuntimeError, match="bad batch 2"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]
    with pytest.raises(ValueError, match="depth"):
        list(prefetched(iter([1]), depth=0))


def test_prefetched_stops_its_producer_when_the_consumer_stops() -> None:
    drawn = []

    def endless():
        i = 0
        while True:
            drawn.append(i)
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # what a loop's break or an exception does to the generator
    assert threading.active_count() == before
    assert len(drawn) <= 3 + 2 + 1  # consumed + queued + the one in the producer's hands


@pytest.mark.parametrize(
    ("name", "thread"), [("sasrec", "batch-producer"), ("bprmf", "MainThread")]
)
def test_only_models_that_ask_draw_their_batches_on_the_producer(
    sequences: Dataset, name: str, thread: str
) -> None:
    config = default_config(name, batch_size=8, threads=1)
    model = build_recommender(name, sequences.n_users, sequences.n_items, config)
    model.prepare(sequences)
    drawn_on: set[str] = set()
    batches = model.training_batches

    def recording(dataset: Dataset, rng: np.random.Generator):
        for batch in batches(dataset, rng):
            drawn_on.add(threading.current_thread().name)
            yield batch

    model.training_batches = recording  # type: ignore[method-assign]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_epoch(model, optimizer, sequences, np.random.default_rng(0))
    assert drawn_on == {thread}


def test_a_dropout_outside_zero_to_one_is_refused(sequences: Dataset) -> None:
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
            build_recommender("sasrec", 3, 5, default_config("sasrec", dropout=p))
