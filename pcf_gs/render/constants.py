"""gsplat's rasterization constants, shared by every renderer in ``pcf_gs.render``.

The numba kernels (``cpu_binning``, ``cpu_composite``, ``cpu_projection``) compile
these values in as literals and numba's on-disk cache (``cache=True``) only checks
the kernel's own source file: after changing a value here, delete
``pcf_gs/render/__pycache__/cpu_*.nb*`` so that the kernels are recompiled.
"""

TILE = 16  # tile side (pixels); each tile owns one depth-sorted slice of the intersections
ALPHA_THRESHOLD = 1.0 / 255.0  # a Gaussian whose alpha at a pixel is below this is skipped
ALPHA_MAX = 0.999  # alpha = min(ALPHA_MAX, o exp(-sigma))
T_STOP = 1e-4  # a pixel stops before the Gaussian that would bring T to <= T_STOP
