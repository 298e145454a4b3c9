"""Subprocess helpers for the crash tests: run ``python -m pcf_gs`` single-threaded, kill it with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]


def env() -> dict:
    # single-threaded torch: the runs are compared bit for bit, and the machine is shared
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")


def command(*args) -> list[str]:
    return [sys.executable, "-m", "pcf_gs", "-q", *map(str, args)]


def run(*args, timeout: float = 300) -> tuple[int, float, str]:
    """(exit code, seconds, stderr) of one uninterrupted command."""
    t0 = time.monotonic()
    p = subprocess.run(command(*args), env=env(), capture_output=True, text=True, timeout=timeout)
    return p.returncode, time.monotonic() - t0, p.stderr


def run_killed(*args, after: float) -> int | None:
    """Start a command and SIGKILL it ``after`` seconds in; its exit code if it ended first, else None."""
    p = subprocess.Popen(command(*args), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return p.wait(timeout=after)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


def same(a, b, where: str = "") -> None:
    """Assert two checkpoint payloads are equal: tensors bit for bit (torch.equal), arrays exactly."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, set(a) ^ set(b))
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes); {} if it does not exist."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
