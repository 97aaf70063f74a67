"""The CUDA paths of the train stage (bf16, channels_last, fused Adam, CUDA graphs); skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

import partc
from partc.data.load import load_all
from partc.run import load_checkpoint, run_paths
from partc.train import train
from tests.train_specs import TINY, UNUSED, same, segment_state

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_run_trains_checkpoints_and_resumes_on_cpu(tmp_path):
    net = partc.loads(TINY)
    data = load_all(net)
    results = train(net, tmp_path / "run", device="cuda", epochs=2, quiet=True, data=data)
    assert all(v["top1"] is not None for v in results["tasks"].values())
    state = load_checkpoint(run_paths(tmp_path / "run")["last"], net)
    assert state["rng"]["cuda"] and state["epoch"] == 2
    init = load_checkpoint(run_paths(tmp_path / "run")["init"])["model"]
    for level, i in UNUSED:
        assert same(segment_state(init, level, i), segment_state(state["model"], level, i))
    train(net, tmp_path / "run", device="cpu", resume=True, epochs=3, quiet=True, data=data)
    assert load_checkpoint(run_paths(tmp_path / "run")["last"])["epoch"] == 3


def test_graphed_fused_step_trains():
    from partc.train import fast

    net = partc.loads(TINY)
    torch.manual_seed(0)
    model = fast.prepare_model(partc.compile(net), torch.device("cuda")).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True, capturable=True)
    gen = torch.Generator().manual_seed(0)
    batches = {t: (torch.randn(8, 2, 8, 8, generator=gen).cuda().contiguous(memory_format=torch.channels_last),
                   torch.randint(0, net.tasks[t].classes, (8,), generator=gen).cuda()) for t in net.tasks}
    model.forward_all({t: x for t, (x, _) in batches.items()})  # cache the row plan
    step = fast.GraphedFusedStep(model, opt, list(net.tasks), {t: 1.0 for t in net.tasks}, batches)
    losses = [float(step(batches)) for _ in range(30)]
    assert losses[-1] < losses[0]
