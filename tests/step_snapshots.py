"""The model's state after each optimizer step of one training step, for tests of multi-update methods."""

import torch

from wsolbench.data.datasets import open_dataset
from wsolbench.engine.distributed import Processes
from wsolbench.engine.loop import TrainingLoop, phase_loader
from wsolbench.method import StepContext


def states_after_each_step(method, settings, root, monkeypatch, batch_size: int = 4):
    """Train ``method`` for one training step on the CPU (batches of ``batch_size`` from the synthetic split at
    ``root``, 32 px) through the engine's loop; returns ``(model, before, [state after each optimizer step],
    epoch result)``."""
    model = method.build_model()
    processes = Processes(0, 1, torch.device("cpu"))
    context = StepContext(0, 0, processes.device, method.num_classes, torch.Generator().manual_seed(0))
    loop = TrainingLoop(method, model, method.optimizers(model, settings), processes, context=context)
    snapshots = []
    original_step = TrainingLoop.step

    def step_and_snapshot(self, name):
        original_step(self, name)
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(TrainingLoop, "step", step_and_snapshot)
    train = open_dataset("synthetic", root, "train", image_size=32)
    loader, _ = phase_loader(method, train, batch_size, processes, seed=0, sampler_generator=torch.Generator(),
                             cache="off", num_workers=0)
    loop.start_phase(method.phases(settings)[0])
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result = loop.train_epoch(loader, 1, max_steps=1)
    return model, before, snapshots, result
