"""Every study's training job runs in channels-last memory format (the engine's choice on a GPU under
bf16/fp16) and computes the same losses as in the default layout: no model or step relies on NCHW
strides (a ``.view`` on an activation would raise; a layout-blind reshape would change the losses)."""

import pytest
import torch

from medgan.config import load_params
from medgan.studies import build_job, run_job
from medgan.studies.registry import available


@pytest.mark.parametrize("notebook, model", available())
def test_every_job_trains_channels_last_with_the_same_first_losses(notebook, model, tmp_path):
    history, nets = {}, {}
    for layout in ("contiguous", "channels_last"):
        job = build_job(notebook, model, load_params(notebook, "smoke"))
        result = run_job(job, tmp_path / layout, progress=False, total_steps=2, memory_format=layout,
                         checkpoint_every=0, sample_every=0, log_every=1)
        history[layout], nets[layout] = result.history.drop(columns=["time_s"]), job.step.nets
    convs = [p for net in nets["channels_last"].values() for p in net.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    # Step 1's losses come from the initial weights: equal up to the rounding of other conv kernels
    # (bf16 jobs round every conv to 8 bits of mantissa).
    rel = 1e-2 if job.options.get("precision", "fp32") != "fp32" else 1e-5
    first = [h[h["step"] == 1].iloc[0] for h in (history["contiguous"], history["channels_last"])]
    assert first[1].to_numpy() == pytest.approx(first[0].to_numpy(), rel=rel, abs=1e-6)
