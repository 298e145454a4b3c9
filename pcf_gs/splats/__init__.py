"""Splat files: reading and writing them, per-object export and object editing.

- ``ply.py``         the 3DGS PLY layout (``Splats``), with our optional label properties
- ``export.py``      model parameters <-> world-frame splats; per-object export
- ``edit.py``        object edits on splat sets (remove, extract, recolour, move, duplicate, ...)
- ``edit_script.py`` the ``pcf-gs edit`` flags and YAML script format, and the edit job
"""
