"""Two "nodes" on one machine: two torchrun launches with --nnodes=2 meeting at one rendezvous
endpoint (gloo). They must train the weights one process trains at the same global batch, and only
global rank 0 (node 0, local rank 0) may write the log and the checkpoints."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.toy import assert_matches_one_process

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_match_one_process_and_only_global_rank_0_writes(tmp_path):
    steps, batch, port = 6, 8, _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    nodes = []
    for node_rank in (0, 1):
        # Each node writes into its own folder: were node 1's rank to write, its folder would not stay empty.
        out = tmp_path / f"node{node_rank}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node_rank}",
               "--nproc_per_node=1", "--rdzv-backend=static", f"--rdzv-endpoint=127.0.0.1:{port}",
               str(ROOT / "tests/train/ddp_worker.py"), str(out), str(steps), str(batch)]
        nodes.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
        assert "terminate called" not in err

    ddp = torch.load(tmp_path / "node0" / "final_weights.pt", weights_only=True)
    assert_matches_one_process(ddp, tmp_path / "single", steps=steps, batch=batch)

    run_dir = Path((tmp_path / "node0" / "run_dir.txt").read_text())
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 1
    assert len(list((run_dir / "checkpoints").glob("*.pt"))) == 1
    node1 = tmp_path / "node1"
    written = [p for p in node1.rglob("*") if p.is_file()] if node1.exists() else []
    assert written == [], f"a rank other than global rank 0 wrote {written}"
