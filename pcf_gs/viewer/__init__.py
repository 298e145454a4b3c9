"""Interactive browser viewer (``pcf-gs view``): scene loading, the render call, the viser app.

- :mod:`pcf_gs.viewer.target`: what is viewed (run / segment output / any 3DGS PLY -> :class:`ViewScene`)
- :mod:`pcf_gs.viewer.view_renderer`: the render call per mode, picking, adaptive resolution (no viser)
- :mod:`pcf_gs.viewer.app`: the viser server and GUI panel, display state, handlers, :func:`serve`
- :mod:`pcf_gs.viewer.render_loop`: one render thread per browser tab, the executor all render calls go through
- :mod:`pcf_gs.viewer.live`: :class:`LiveTrainingViewer`, the viewer fed by ``pcf-gs train --viewer``
- :mod:`pcf_gs.viewer.export`: the Export buttons' PLY writer
"""

from pcf_gs.viewer.view_renderer import AdaptiveResolution, Camera, DisplayState, ViewRenderer
from pcf_gs.viewer.target import ViewScene, load_target

__all__ = ["AdaptiveResolution", "Camera", "DisplayState", "ViewRenderer", "ViewScene", "load_target"]
