"""Gaussian-splat rendering: ``rasterize`` (gsplat on CUDA, numba kernels on CPU).

See ``docs/rendering.md`` for the rules and every difference from gsplat's CUDA kernels.
"""

from pcf_gs.render.rasterize import composite, rasterize

__all__ = ["rasterize", "composite"]
