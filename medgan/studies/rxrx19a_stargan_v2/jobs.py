"""Study 1's training job: StarGAN v2 on the RxRx19a training wells (4 domains, 5 stains)."""

from __future__ import annotations

from medgan.config import Params
from medgan.data.augment import Augment
from medgan.data.rxrx19a import STAINS
from medgan.models.stargan_v2 import StarGANv2Config
from medgan.studies.registry import register
from medgan.studies.rxrx19a_stargan_v2.data import labels_of, load_split
from medgan.train.engine import seed_everything
from medgan.train.job import TrainingJob
from medgan.train.stargan_v2 import AUGMENT_KEYS, StarGANv2Step, source_sample_weights

NOTEBOOK = "01_rxrx19a_stargan_v2"


def model_config(P: Params, *, channels: int = 5, num_domains: int = 4) -> StarGANv2Config:
    """The StarGAN v2 networks' configuration from the ``model`` section (``None`` widths: official rule)."""
    m = P.model
    return StarGANv2Config(image_size=P.data.image_size, channels=channels, num_domains=num_domains,
                           latent_dim=m.latent_dim, style_dim=m.style_dim, mapping_hidden=m.mapping_hidden,
                           base_width=m.base_width, max_width=m.max_width, n_down=m.n_down)


@register(NOTEBOOK, "stargan_v2")
def stargan_v2(P: Params) -> TrainingJob:
    """StarGAN v2 (``model``, ``train``) on the training wells, with ``train.n_checkpoints`` checkpoints kept
    for the curves over training. Source batches are read from the loader's item store by
    ``data.num_workers`` DataLoader workers, drawn by ``train.sampling`` (``balanced``: every domain
    equally often, the official loaders; ``by_count``: uniform over images). The training wells are
    also the reference pool: the step reads its two references per image by index from the same
    dataset (only the label array is in memory). ``augment`` applies to sources and references."""
    train_set = load_split(P, "train")
    labels = labels_of(train_set)  # from the loader's rows: no pixels are read
    t = P.train
    config = model_config(P, channels=len(STAINS), num_domains=len(train_set.domain_names))
    augment = Augment.from_params(P.augment.to_dict(), keys=AUGMENT_KEYS)
    seed_everything(P.seed)  # the initial weights are part of the run's fingerprint
    step = StarGANv2Step(config, references=train_set, reference_labels=labels, sampling=t.sampling,
                         augment=augment, lr=t.lr, mapping_lr=t.mapping_lr,
                         betas=tuple(t.betas), weight_decay=t.weight_decay, lambda_reg=t.lambda_reg,
                         lambda_sty=t.lambda_sty, lambda_ds=t.lambda_ds, lambda_cyc=t.lambda_cyc, ds_iter=t.ds_iter,
                         ema_beta=t.ema_beta, reference_mode=t.reference_mode)
    every = max(1, t.steps // max(1, t.n_checkpoints))
    # No fingerprint here: the engine derives it from the step, the data, the seed and the batch.
    options = dict(total_steps=t.steps, batch_size=t.batch_size, seed=P.seed, device=P.device,
                   precision=t.precision, log_every=t.log_every, sample_every=t.sample_every,
                   sample_count=t.sample_count, checkpoint_every=every, keep_checkpoints=t.n_checkpoints + 1,
                   num_workers=P.data.num_workers, desc="StarGAN v2", augment=augment,
                   sample_weights=source_sample_weights(labels.numpy(), t.sampling))
    counts = {name: int((labels == k).sum()) for k, name in enumerate(train_set.domain_names)}
    info = {"domains": train_set.domain_names, "train_images_per_domain": counts,
            "train_subjects": len(train_set.subjects), "sampling": t.sampling,
            "augment": augment.describe() if augment is not None else "none",
            "config": config.to_dict(), "match_report": train_set.match_report}
    return TrainingJob(step=step, dataset=train_set, options=options, info=info)
