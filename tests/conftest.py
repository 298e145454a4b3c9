"""Shared test helpers: a tiny hand-built Messy Rooms scene with Kubric-style cameras."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pcf_gs.resources import demo_scene_dir


REPO = Path(__file__).resolve().parent.parent


def load_tool(name: str):
    """Import ``tools/NAME.py`` (tools/ is not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def look_at_blender(pos: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """[3,3] Blender camera rotation (columns: right, up, backward) looking from pos to target."""
    f = target - pos
    f = f / np.linalg.norm(f)
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    cam_up = np.cross(right, f)
    return np.stack([right, cam_up, -f], axis=1)


def rotmat_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def project_blender(X, pos, R_blender, fx_n, fy_n, W, H):
    """Pixel (u, v) of world point X, derived from the Blender camera directly (not via OpenCV)."""
    d = X - pos
    right, up, back = R_blender[:, 0], R_blender[:, 1], R_blender[:, 2]
    depth = -d @ back
    u = W / 2 + fx_n * W * (d @ right) / depth
    v = H / 2 - fy_n * H * (d @ up) / depth
    return u, v


def write_tiny_messy_rooms(root: Path, n_frames: int = 5, W: int = 32, H: int = 24, seed: int = 0) -> dict:
    """Write a minimal Messy Rooms scene; returns what the test needs to check it."""
    rng = np.random.default_rng(seed)
    fx_n = 0.9
    fy_n = fx_n * W / H  # square pixels
    K = [[fx_n, 0.0, -0.5], [0.0, -fy_n, -0.5], [0.0, 0.0, -1.0]]  # Kubric: normalised, signed
    X = np.array([0.3, -0.2, 0.5])  # the marked point (world)
    positions, quats, pixels = [], [], []
    for d in ("color", "detic_semantic", "detic_instance", "detic_probabilities", "semantic", "instance"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        ang = 2 * np.pi * i / n_frames
        pos = np.array([4 * np.cos(ang), 4 * np.sin(ang), 1.5 + 0.2 * i])
        target = np.array([0.1, 0.0, 0.4]) + rng.normal(0, 0.05, 3)
        R = look_at_blender(pos, target)
        positions.append(pos.tolist())
        quats.append(rotmat_to_quat_wxyz(R).tolist())
        u, v = project_blender(X, pos, R, fx_n, fy_n, W, H)
        pixels.append((u, v))
        img = np.full((H, W, 3), 40, np.uint8)
        ui, vi = int(np.floor(u)), int(np.floor(v))
        img[vi, ui] = (255, 0, 0)
        cv2.imwrite(str(root / "color" / f"{i}.png"), img[:, :, ::-1])
        sem = np.zeros((H, W), np.uint8)
        sem[vi - 2 : vi + 3, ui - 2 : ui + 3] = 1
        inst = sem.astype(np.int16) * (7 + i)  # per-view ids differ
        np.save(root / "detic_semantic" / f"{i}.npy", sem)
        np.save(root / "detic_instance" / f"{i}.npy", inst)
        np.save(root / "detic_probabilities" / f"{i}.npy", np.where(sem > 0, 0.8, 0.0).astype(np.float32))
        np.save(root / "semantic" / f"{i}.npy", sem)
        np.save(root / "instance" / f"{i}.npy", sem.astype(np.int16))
    meta = {
        "flags": {"resolution": [W, H]},
        "metadata": {"num_frames": n_frames, "width": W, "height": H},
        "camera": {"K": K, "positions": positions, "quaternions": quats, "focal_length": 35.0, "sensor_width": 32.0},
    }
    (root / "metadata.json").write_text(json.dumps(meta))
    return {"X": X, "pixels": pixels, "W": W, "H": H, "n": n_frames}


@pytest.fixture
def tiny_mr(tmp_path: Path):
    root = tmp_path / "scene"
    info = write_tiny_messy_rooms(root)
    return root, info


@pytest.fixture(scope="session")
def viewer_run(tmp_path_factory):
    """A tiny trained + segmented run of the shipped demo scene (64 px, 200 steps, ~20 s):
    RUN/checkpoint.pt, RUN/segment/{scene_labeled.ply, objects.json, gaussian_*_ids.npy}."""
    from pcf_gs.cli import main

    run = tmp_path_factory.mktemp("viewer") / "run"
    assert main([
        "-q", "train", str(demo_scene_dir()), "--out", str(run), "--config", "cpu_fast",
        "--set", "data.max_size=64", "--set", "model.init_points=3000", "--set", "train.iterations=200",
        "--set", "train.warmup_iterations=60", "--set", "train.cross_view_start=100000",
        "--set", "train.densify_from=40", "--set", "train.densify_until=150", "--set", "train.log_every=50",
        "--set", "train.pixels_per_view=256",
    ]) == 0
    assert main(["-q", "segment", str(run), "--out", str(run / "segment"), "--export-ply", "--split", "test"]) == 0
    return run
