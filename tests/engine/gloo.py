"""Run a function in two CPU processes joined as torchrun would join them (gloo), for DDP tests."""

import json
import os
import socket

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, worker, args, queue):
    os.environ.update(WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    result = worker(*args)
    if rank == 0:
        queue.put(json.loads(json.dumps(result)))


def on_two_processes(worker, *args):
    """``worker(*args)`` in two spawned processes with the torchrun environment of a 2-process group;
    returns rank 0's result (JSON round-tripped). ``worker`` must be a module-level function."""
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_entry, args=(2, _free_port(), worker, args, queue), nprocs=2, start_method="spawn")
    return queue.get()
