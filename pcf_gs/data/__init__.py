"""Scene data: the data model, loaders for each layout, and format detection."""

from pcf_gs.data.detect import detect_format, load_scene
from pcf_gs.data.scene import ClassInfo, ClassTable, Frame, Normalization, Scene

__all__ = ["ClassInfo", "ClassTable", "Frame", "Normalization", "Scene", "detect_format", "load_scene"]
