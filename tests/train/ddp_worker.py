"""Run by tests/train/test_distributed.py under torchrun: the toy GAN through the engine.

``ddp_worker.py RUN_DIR STEPS BATCH``: train and write rank 0's weights, then ``cleanup()``.
``ddp_worker.py --exit-without-cleanup``: join the group, run collectives, exit without
``cleanup()`` (as a script that raises would): the teardown ``init`` registers must still run.
"""

import sys

import torch
import torch.distributed as dist

from medgan.train import distributed, seed_everything, train
from tests.train.toy import ToyGANStep, ToyImages


def exit_without_cleanup() -> None:
    distributed.init(backend="gloo")
    box = torch.ones(16)
    dist.all_reduce(box)
    distributed.broadcast_module(torch.nn.Linear(4, 4))
    distributed.barrier()


def train_and_save(run_dir: str, steps: int, batch: int) -> None:
    info = distributed.init(backend="gloo")
    seed_everything(0)
    step = ToyGANStep()
    if info.rank == 1:
        # Different initial weights on rank 1: the engine must broadcast rank 0's before training.
        torch.nn.init.normal_(step.nets["G"][0].weight)
    result = train(step, ToyImages(), run_dir=run_dir, total_steps=steps, batch_size=batch, seed=5,
                   progress=False, device="cpu")
    if info.is_main:
        torch.save({k: v for n, net in step.nets.items() for k, v in
                    ((f"{n}.{k}", v) for k, v in net.state_dict().items())}, f"{run_dir}/final_weights.pt")
        with open(f"{run_dir}/run_dir.txt", "w") as f:
            f.write(str(result.run_dir))
    distributed.cleanup()  # every rank waits here for rank 0's writes, then the group goes


if __name__ == "__main__":
    if sys.argv[1] == "--exit-without-cleanup":
        exit_without_cleanup()
    else:
        train_and_save(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
