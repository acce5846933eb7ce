"""The base of wsolbench's torchmetrics metrics: states that are sums of a scoring's integer statistics."""

import torch
from torchmetrics import Metric


class SummedStatistics(Metric):
    """A torchmetrics ``Metric`` over a torch-free *scoring* (:mod:`wsolbench.metrics.accumulators`): one
    state per statistic in ``scoring.shapes``, summed over batches, over worker processes
    (:meth:`add_statistics`) and across ``torch.distributed`` ranks (``dist_reduce_fx="sum"``)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, scoring, **kwargs):
        super().__init__(**kwargs)
        self.scoring = scoring
        for name, shape in scoring.shapes.items():
            self.add_state(name, default=torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")

    def add_statistics(self, statistics: dict) -> None:
        """Add sufficient statistics (a dict holding every statistic of the scoring), e.g. from a worker
        process running ``scoring.statistics``."""
        self._update_count += 1  # counts as an update for torchmetrics
        for name in self.scoring.shapes:
            state = getattr(self, name)
            state += torch.as_tensor(statistics[name], dtype=torch.long, device=state.device)

    def sums(self) -> dict:
        """The states as numpy arrays (on the CPU), for ``scoring.result``."""
        return {name: getattr(self, name).cpu().numpy() for name in self.scoring.shapes}
