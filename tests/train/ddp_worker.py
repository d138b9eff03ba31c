"""Run by tests/train/test_distributed.py under torchrun: the toy GAN through the engine."""

import sys

import torch

from medgan.train import distributed, seed_everything, train
from tests.train.toy import ToyGANStep, ToyImages

run_dir, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
distributed.cleanup()
