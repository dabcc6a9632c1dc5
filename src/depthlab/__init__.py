"""depthlab: complete partial depth (holes, sparse points, LiDAR) with DepthLab or classical fills.

``known_mask`` is True where depth is known. Depth comes back in the units of the known depth.
Torch is imported lazily: classical methods and I/O work without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from depthlab.outputs import DepthLabOutput

__version__ = "0.1.0"

__all__ = ["DepthLabOutput", "DepthLabPipeline", "complete", "__version__"]

if TYPE_CHECKING:
    from depthlab.completion import complete
    from depthlab.pipeline import DepthLabPipeline


def __getattr__(name: str) -> Any:
    if name == "DepthLabPipeline":
        from depthlab.pipeline import DepthLabPipeline

        return DepthLabPipeline
    if name == "complete":
        from depthlab.completion import complete

        return complete
    raise AttributeError(f"module 'depthlab' has no attribute {name!r}")
