"""The quickstart's one training job: study 2's DCGAN on toy shapes."""

from __future__ import annotations

from medgan.config import Params
from medgan.data.toy_shapes import ToyShapes
from medgan.models.dcgan import DCGANConfig
from medgan.studies.registry import register
from medgan.train.dcgan import DCGANStep
from medgan.train.engine import seed_everything
from medgan.train.job import TrainingJob


@register("00_quickstart", "dcgan")
def dcgan(P: Params) -> TrainingJob:
    """A DCGAN (``model``) on ``data.n_images`` toy shapes, trained for ``train.steps`` iterations."""
    seed_everything(P.seed)  # model initialisation is part of the experiment
    config = DCGANConfig(image_size=P.data.image_size, channels=1, z_dim=P.model.z_dim,
                         g_width=P.model.g_width, d_width=P.model.d_width)
    step = DCGANStep(config, lr=P.train.lr, betas=tuple(P.train.betas))
    dataset = ToyShapes(P.data.n_images, size=P.data.image_size, seed=P.data.seed)
    # No fingerprint here: the engine derives it from the step, the data, the seed and the batch.
    options = dict(total_steps=P.train.steps, batch_size=P.train.batch_size, seed=P.seed, device=P.device,
                   precision=P.train.precision, log_every=P.train.log_every, sample_every=P.train.sample_every,
                   checkpoint_every=P.train.checkpoint_every, num_workers=P.data.num_workers, desc="DCGAN")
    return TrainingJob(step=step, dataset=dataset, options=options,
                       info={"images": len(dataset), "config": config.to_dict()})
