"""The base of wsolbench's stateful metrics: states that are sums of integer statistics."""

import torch
from torchmetrics import Metric


class SummedStatistics(Metric):
    """A torchmetrics ``Metric`` whose states (named in ``STATISTICS``) are summed: over batches, over worker
    processes (:meth:`add_statistics`) and across ``torch.distributed`` ranks (``dist_reduce_fx="sum"``)."""

    full_state_update = False
    higher_is_better = True
    STATISTICS: tuple[str, ...] = ()

    def add_statistics(self, statistics: dict) -> None:
        """Add sufficient statistics (a dict holding every name of ``STATISTICS``), e.g. from a worker."""
        self._update_count += 1  # counts as an update for torchmetrics
        for name in self.STATISTICS:
            state = getattr(self, name)
            state += torch.as_tensor(statistics[name], dtype=torch.long, device=state.device)
