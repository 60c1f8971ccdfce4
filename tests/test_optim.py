"""gankit.optim and the optimizer state around it: fused Adam on channels_last weights without layout copies, moments
restored in their parameters' layout, and memory_order's flat views."""

from __future__ import annotations

import pytest
import torch
from helpers import PIX2PIX

from gankit.config.layering import resolve


def test_pix2pix_trains_channels_last_with_fused_adam(tmp_path):
    from gankit.data.base import ImageData
    from gankit.tasks.pix2pix import Pix2PixTask

    cfg = resolve(overrides={**PIX2PIX, "train.channels_last": True})  # paired sets default to contiguous
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8, generator=g)
    data = ImageData(
        imgs, torch.full((4,), -1), "t", [], torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    )
    task = Pix2PixTask(cfg, data, torch.device("cpu"))
    conv = task.g.down[1][1]  # 8 -> 16 channels (a 1-channel weight is both layouts at once)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert all(grp["fused"] for o in task.optimizers.values() for grp in o.param_groups)
    plain = Pix2PixTask(resolve(overrides={**PIX2PIX, "train.channels_last": False}), data, torch.device("cpu"))
    assert plain.g.down[1][1].weight.is_contiguous()


def test_restored_adam_moments_take_their_parameters_layout():
    """Checkpoints store moments contiguous; restored next to channels_last weights they must take the weights'
    layout, else fused Adam on the CPU pairs the wrong elements and the resume is not exact."""
    from gankit.training.checkpoint import match_layouts

    w = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(0)).contiguous(
        memory_format=torch.channels_last
    )

    def two_steps(reload: bool) -> torch.Tensor:
        p = torch.nn.Parameter(w.clone())
        p.grad = w.flip(0).contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam([p], fused=True)
        opt.step()
        if reload:
            sd = opt.state_dict()
            sd["state"][0] = {k: v.contiguous() for k, v in sd["state"][0].items()}  # as a checkpoint stores them
            opt.load_state_dict(sd)
            match_layouts(opt)
            assert opt.state[p]["exp_avg"].stride() == p.stride()
        opt.step()
        return p.detach()

    assert torch.equal(two_steps(False), two_steps(True))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_layout_adam_updates_channels_last_weights_as_adam_does(monkeypatch, amsgrad):
    """gankit's Adam hands the fused kernel flat views of channels_last tensors (no contiguous copies): the same
    update as torch's fused Adam bit for bit (the same kernel), the same as its per-parameter Adam to a few ulp (another
    kernel), and the flat path is really taken."""
    import gankit.optim as optim

    flattened, plain_order = [], optim.memory_order
    monkeypatch.setattr(optim, "memory_order", lambda t: flattened.append(tuple(t.shape)) or plain_order(t))
    gen = torch.Generator().manual_seed(0)
    shapes = [(8, 4, 3, 3), (6, 5, 4, 4), (7,)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    cl = lambda t: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t.clone()

    def train(make) -> list[torch.Tensor]:
        ps = [torch.nn.Parameter(cl(w)) for w in start]
        opt = make(ps)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = cl(g)
            opt.step()
        return [p.detach() for p in ps]

    kw = dict(lr=1e-2, betas=(0.5, 0.99), weight_decay=1e-3, amsgrad=amsgrad)
    ours = train(lambda ps: optim.LayoutAdam(ps, fused=True, **kw))
    assert sorted(set(flattened)) == [(6, 5, 4, 4), (8, 4, 3, 3)]  # each tensor of both 4-d weights, each step
    assert ours[0].is_contiguous(memory_format=torch.channels_last) and not ours[0].is_contiguous()
    fused = train(lambda ps: torch.optim.Adam(ps, fused=True, **kw))
    assert all(torch.equal(a, b) for a, b in zip(ours, fused))  # the same fused kernel on the same elements
    # The single-tensor Adam is another kernel: how it vectorises (AVX2, AVX512) and fuses the multiply-adds decides
    # the last bit, so on some machines (an AMD EPYC, AVX512) it differs from the fused kernel by 1 ulp, and three
    # steps can add up a few. Per step each kernel rounds the update (at most ~lr here) and the new weight: so allow
    # 8 ulp of the weight (rtol) plus 8 ulp of lr per step for weights near 0 (atol). A layout bug (an element paired
    # with another element's moments) moves weights by ~lr = 1e-2, about 10^4 times more than that.
    eps, steps = torch.finfo(torch.float32).eps, len(grads)
    single = train(lambda ps: torch.optim.Adam(ps, foreach=False, **kw))
    for a, b in zip(ours, single):
        torch.testing.assert_close(a, b, rtol=8 * eps, atol=8 * eps * kw["lr"] * steps)


def test_memory_order_views_dense_tensors_only():
    from gankit.optim import memory_order

    x = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(memory_order(cl), cl.permute(0, 2, 3, 1).reshape(-1))
    assert memory_order(cl).data_ptr() == cl.data_ptr()  # a view, not a copy
    assert torch.equal(memory_order(x), x.reshape(-1))
    assert memory_order(x[:, :, :2]) is None  # a slice has holes
