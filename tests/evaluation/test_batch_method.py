"""Eval predictions go through depthlab.batch's per-item step: DepthLab seeds follow the item."""

import numpy as np
import pytest

from depthlab.evaluation.item import BatchMethod, build_method


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    depth = rng.uniform(1, 4, (24, 32)).astype(np.float32)
    known = rng.random((24, 32)) < 0.3
    return rgb, np.where(known, depth, 0).astype(np.float32), known


def test_depthlab_predictions_depend_on_the_item_not_the_order():
    pytest.importorskip("torch")
    from depthlab.batch import BatchOptions, LoadedMethod, PreparedItem, complete_prepared
    from depthlab.pipeline import DepthLabPipeline

    pipeline = DepthLabPipeline.build_tiny(seed=0)
    options = {"pipeline": pipeline, "num_inference_steps": 2, "processing_resolution": 32, "strength": 1.0}
    method = build_method("depthlab", options)
    assert isinstance(method, BatchMethod)
    rgb, depth, known = _inputs()
    first = method(rgb, depth, known, key="nyu/ratio:5/00001")
    other = method(rgb, depth, known, key="nyu/ratio:5/00008")
    again = build_method("depthlab", options)(rgb, depth, known, key="nyu/ratio:5/00001")
    assert np.array_equal(first, again)  # a fresh method, after other items: the same prediction
    assert not np.array_equal(first, other)  # another item draws other noise
    # the very function `depthlab complete` runs for an item of that key
    batch = complete_prepared(
        PreparedItem(rgb, depth, known), LoadedMethod("depthlab", "test", pipeline=pipeline), "nyu/ratio:5/00001",
        BatchOptions(method_options={k: v for k, v in options.items() if k != "pipeline"}),
    )  # fmt: skip
    assert np.array_equal(first, batch.depth)


def test_classical_method_unchanged():
    from depthlab import classical

    rgb, depth, known = _inputs(1)
    assert np.array_equal(build_method("linear")(rgb, depth, known, key="x"), classical.linear(depth, known))
