"""Synthetic scenes with exact ground truth and simulated noisy 2D panoptic predictions.

``generate_scene(out_dir, SynthOptions(...))`` writes a folder in the Messy Rooms layout
(Contrastive Lift's data set), so the same loader reads real downloads and ours.

- :mod:`pcf_gs.synth.raycast`    analytic, numba-parallel ray casting of unit primitives
- :mod:`pcf_gs.synth.layout`     Scene, Room, SceneObject and the random layout (build_scene)
- :mod:`pcf_gs.synth.appearance` colours, procedural textures, materials, lights
- :mod:`pcf_gs.synth.cameras`    look-at poses, focal length, camera paths, pixel rays
- :mod:`pcf_gs.synth.shading`    shading of ray hits and rendering of views with GT
- :mod:`pcf_gs.synth.noise`      pure noise models turning GT label maps into predictions
- :mod:`pcf_gs.synth.generator`  options, file writing (atomic, deterministic per seed)
"""

from pcf_gs.synth.generator import SynthOptions, generate_scene, parse_size

__all__ = ["SynthOptions", "generate_scene", "parse_size"]
