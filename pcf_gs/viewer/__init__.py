"""Interactive browser viewer (``pcf-gs view``): scene loading, the render call, the viser app.

- :mod:`pcf_gs.viewer.target`: what is viewed (run / segment output / any 3DGS PLY -> :class:`ViewScene`)
- :mod:`pcf_gs.viewer.render`: the render call per mode, picking, adaptive resolution (no viser)
- :mod:`pcf_gs.viewer.app`: the viser GUI and server, per-client render loops, live training
"""

from pcf_gs.viewer.render import AdaptiveResolution, Camera, DisplayState, ViewRenderer
from pcf_gs.viewer.target import ViewScene, load_target

__all__ = ["AdaptiveResolution", "Camera", "DisplayState", "ViewRenderer", "ViewScene", "load_target"]
