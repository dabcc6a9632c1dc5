"""Evaluation harness: metrics, alignment, baselines and the benchmark runner.

``depthlab.evaluation.metrics`` and ``depthlab.alignment`` are pure numpy; the runner
(``depthlab.evaluation.runner``) and the learned baselines (``depthlab.monocular``) are
imported on demand.
"""

from depthlab.alignment import align_depth, fit_scale, fit_scale_shift
from depthlab.evaluation.metrics import METRIC_NAMES, compute_metrics, region_mask

__all__ = [
    "METRIC_NAMES",
    "align_depth",
    "compute_metrics",
    "fit_scale",
    "fit_scale_shift",
    "region_mask",
]
