"""Every score the five studies report, as pure functions on arrays (numpy or torch).

Distribution metrics take (N, D) features from one shared extractor (``medgan.metrics.features``),
cached per dataset/split/extractor/preprocessing (``medgan.metrics.cache``); report the extractor's
``.name`` beside every number. Computations run on the device the arrays are on (numpy: CPU;
torch tensors on CUDA: GPU).

Typical use in a notebook::

    extractor = get_extractor("domain_cnn", weights_path=run.dir / "domain_cnn.pth")
    real, _ = cached_features({"dataset": "ct", "split": "test", "extractor": extractor.name,
                               "preprocessing": {"window_hu": [-1000, 400], "size": 64}},
                              lambda: extract_features(extractor, real_images, batch_size=64),
                              cache_dir=data_dir() / "feature_cache")
    fake, fake_probs = extract_features(extractor, generated_images, batch_size=64)
    fid = frechet_distance(real, fake)          # report as f"FID ({extractor.name})"
"""

from medgan.metrics.bootstrap import BootstrapCI, MeanSD, bootstrap_ci, mean_sd
from medgan.metrics.cache import cache_key, cached_features
from medgan.metrics.features import (DomainCNN, WeightsNotFoundError, available_extractors, extract_features,
                                     finetune_inception_v3, get_extractor, train_domain_cnn)
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
    "DomainCNN", "WeightsNotFoundError", "cached_features", "cache_key",
]
