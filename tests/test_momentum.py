"""Momentum key encoder (EMA over parameters only) and FIFO key queue (golden DaNCE case 1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcml_core.models import DCMLNet, KeyQueue, MomentumEncoder
from tests.golden import load_golden


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


def _perturb(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


# ---------------------------------------------------------------------------------------------- EMA


def test_ema_arithmetic_two_steps() -> None:
    query = _tiny_model()
    encoder = MomentumEncoder(query, momentum=0.9)
    key0 = [p.detach().clone() for p in encoder.key_model.parameters()]
    assert all(torch.equal(k, q) for k, q in zip(key0, query.parameters()))
    _perturb(query, 1)
    q1 = [p.detach().clone() for p in query.parameters()]
    encoder.update(query)
    key1 = [0.9 * k + 0.1 * q for k, q in zip(key0, q1)]
    for k, expected in zip(encoder.key_model.parameters(), key1):
        torch.testing.assert_close(k, expected, rtol=0, atol=1e-15)
    _perturb(query, 2)
    encoder.update(query)
    for k, k1, q in zip(encoder.key_model.parameters(), key1, query.parameters()):
        torch.testing.assert_close(k, 0.9 * k1 + 0.1 * q, rtol=0, atol=1e-15)


def test_buffers_not_averaged_and_key_model_frozen() -> None:
    query = _tiny_model()
    encoder = MomentumEncoder(query, momentum=0.5)
    query.train()(torch.randn(8, 3, dtype=torch.float64))  # moves the query's BN running stats
    bn_query, bn_key = query[1], encoder.key_model[1]
    assert not torch.equal(bn_query.running_mean, bn_key.running_mean)
    key_stats = (bn_key.running_mean.clone(), bn_key.running_var.clone(), bn_key.num_batches_tracked.clone())
    encoder.update(query)
    assert torch.equal(bn_key.running_mean, key_stats[0]) and torch.equal(bn_key.running_var, key_stats[1])
    assert torch.equal(bn_key.num_batches_tracked, key_stats[2])
    assert all(not p.requires_grad for p in encoder.key_model.parameters())
    assert all(p.requires_grad for p in query.parameters())
    encoder.train()
    assert not encoder.key_model.training and not bn_key.training
    out = encoder(torch.randn(2, 3, dtype=torch.float64))
    assert not out.requires_grad


def test_momentum_one_and_zero() -> None:
    query = _tiny_model()
    frozen, follow = MomentumEncoder(query, momentum=1.0), MomentumEncoder(query, momentum=0.0)
    before = [p.clone() for p in frozen.key_model.parameters()]
    _perturb(query, 3)
    frozen.update(query)
    follow.update(query)
    assert all(torch.equal(k, b) for k, b in zip(frozen.key_model.parameters(), before))
    assert all(torch.equal(k, q) for k, q in zip(follow.key_model.parameters(), query.parameters()))


def test_ema_covers_dcml_ensemble_and_compositors() -> None:
    torch.manual_seed(5)
    query = DCMLNet(nn.Linear(4, 6), 6, embed_dim=3, ensemble_num=2, compos_num=4)
    encoder = MomentumEncoder(query, momentum=0.9)
    old = encoder.key_model.compositors.weight.clone()
    _perturb(query, 4)
    encoder.update(query)
    expected = 0.9 * old + 0.1 * query.compositors.weight
    torch.testing.assert_close(encoder.key_model.compositors.weight, expected)


def test_bad_momentum_and_mismatched_model() -> None:
    with pytest.raises(ValueError, match="momentum"):
        MomentumEncoder(_tiny_model(), momentum=1.5)
    encoder = MomentumEncoder(_tiny_model())
    with pytest.raises(ValueError, match="does not match"):
        encoder.update(nn.Linear(3, 4).double())


# ---------------------------------------------------------------------------------------------- queue


def test_queue_matches_golden_enqueue() -> None:
    with load_golden() as data:
        queue0, keys, after = (
            torch.from_numpy(data[k])
            for k in ("dance_case1_queue", "dance_case1_k", "dance_case1_queue_after_enqueue")
        )
    queue = KeyQueue(dim=16, size=24, dtype=torch.float64)
    queue.fill(queue0.split(8))  # n_key_batches = 3 batches of B = 8
    assert torch.equal(queue.keys(), queue0) and queue.is_full
    queue.enqueue(keys)
    assert torch.equal(queue.queue, after)
    assert torch.equal(queue.queue[-8:], keys) and torch.equal(queue.queue[:16], queue0[8:])


def test_fifo_order_while_filling() -> None:
    queue = KeyQueue(dim=1, size=5)
    batches = [torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]]), torch.tensor([[5.0], [6.0]])]
    queue.enqueue(batches[0])
    assert int(queue.filled) == 2 and queue.keys().flatten().tolist() == [1.0, 2.0]
    queue.enqueue(batches[1])
    assert queue.keys().flatten().tolist() == [1.0, 2.0, 3.0, 4.0] and not queue.is_full
    queue.enqueue(batches[2])
    assert queue.keys().flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 6.0] and queue.is_full


def test_fill_with_a_single_batch() -> None:
    """The reference crashes for n_key_batches = 1; one batch of `size` keys fills the queue here."""
    queue = KeyQueue(dim=3, size=4)
    keys = torch.randn(4, 3)
    queue.fill([keys])
    assert torch.equal(queue.queue, keys) and int(queue.filled) == 4


def test_queue_input_errors() -> None:
    queue = KeyQueue(dim=3, size=4)
    with pytest.raises(ValueError, match="exactly 4 keys"):
        queue.fill([torch.randn(2, 3)])
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        queue.enqueue(torch.randn(2, 5))
    with pytest.raises(ValueError, match="size 4"):
        queue.enqueue(torch.randn(5, 3))
    with pytest.raises(ValueError, match="positive"):
        KeyQueue(dim=0, size=4)


def test_state_dict_round_trip_resumes_exactly(tmp_path) -> None:
    torch.manual_seed(6)
    query = _tiny_model()
    encoder, queue = MomentumEncoder(query), KeyQueue(dim=2, size=6, dtype=torch.float64)
    queue.enqueue(torch.randn(4, 2, dtype=torch.float64))
    _perturb(query, 7)
    encoder.update(query)
    torch.save({"encoder": encoder.state_dict(), "queue": queue.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", map_location="cpu", weights_only=True)

    encoder2, queue2 = MomentumEncoder(_tiny_model()), KeyQueue(dim=2, size=6, dtype=torch.float64)
    encoder2.load_state_dict(saved["encoder"])
    queue2.load_state_dict(saved["queue"])
    assert int(queue2.filled) == 4 and torch.equal(queue2.queue, queue.queue)
    new_keys = torch.randn(3, 2, dtype=torch.float64)
    queue.enqueue(new_keys)
    queue2.enqueue(new_keys)
    assert torch.equal(queue.queue, queue2.queue) and int(queue2.filled) == 6
    _perturb(query, 8)
    encoder.update(query)
    encoder2.update(query)
    for a, b in zip(encoder.key_model.state_dict().values(), encoder2.key_model.state_dict().values()):
        assert torch.equal(a, b)
