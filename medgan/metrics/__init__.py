"""Every score the five studies report, as pure functions on arrays (numpy or torch).

Distribution metrics take (N, D) features from one shared extractor (``medgan.metrics.features``);
report the extractor's ``.name`` beside every number. Features of the same images by the same
network are computed once: ``extract_features(..., cache_dir=...)`` keeps them in the feature
cache (``medgan.metrics.cache``). Computations run on the device the arrays are on (numpy: CPU;
torch tensors on CUDA: GPU).

Typical use in a notebook::

    extractor = train_domain_cnn(train_set, run_dir=run.dir / "domain_cnn")  # a loader: items read per batch
    real, _ = extract_features(extractor, real_images, batch_size=64, cache_dir=run.dir / "feature-cache")
    fake, fake_probs = extract_features(extractor, generated_images, batch_size=64)
    fid = frechet_distance(real, fake)          # report as f"FID ({extractor.name})"

The extractor trains through the engine in ``run.dir / "domain_cnn" / <key>``, so a re-run
reloads it, and its real-set features then come from the cache. ``train_set`` is a map-style
dataset (an item-store loader; its items' ``image`` and ``label``, or other keys through
``LabelledItems``), read batch by batch; (N, C, H, W) images and (N,) labels in memory work too.
"""

from medgan.metrics.bootstrap import BootstrapCI, MeanSD, bootstrap_ci, mean_sd
from medgan.metrics.cache import cache_key, cached_features
from medgan.metrics.features import (ConcatLabelledItems, DomainCNN, LabelledItems, WeightsNotFoundError,
                                     available_extractors, extract_features, feature_cache_key, finetune_inception_v3,
                                     get_extractor, train_domain_cnn)
from medgan.metrics.frechet import feature_statistics, frechet_distance, frechet_distance_from_stats
from medgan.metrics.image_quality import psnr, ssim
from medgan.metrics.inception_score import inception_score
from medgan.metrics.kid import kernel_inception_distance
from medgan.metrics.lpips_distance import (LPIPSWeightsNotFoundError, domain_feature_distance, lpips_distance,
                                           lpips_diversity)
from medgan.metrics.manifold import ManifoldMetrics, density_coverage, improved_precision_recall, manifold_metrics
from medgan.metrics.memorization import MemorizationResult, memorization
from medgan.metrics.prd import PRDCurve, prd, prd_from_histograms
from medgan.metrics.roc import auroc, delong_test, sensitivity_specificity

__all__ = [
    "frechet_distance", "frechet_distance_from_stats", "feature_statistics",
    "kernel_inception_distance", "inception_score",
    "prd", "prd_from_histograms", "PRDCurve",
    "improved_precision_recall", "density_coverage", "manifold_metrics", "ManifoldMetrics",
    "lpips_distance", "lpips_diversity", "domain_feature_distance", "LPIPSWeightsNotFoundError",
    "psnr", "ssim",
    "auroc", "sensitivity_specificity", "delong_test",
    "bootstrap_ci", "BootstrapCI", "mean_sd", "MeanSD",
    "memorization", "MemorizationResult",
    "get_extractor", "available_extractors", "extract_features", "train_domain_cnn", "finetune_inception_v3",
    "DomainCNN", "WeightsNotFoundError", "cached_features", "cache_key", "feature_cache_key",
    "LabelledItems", "ConcatLabelledItems",
]
