"""Native compositing kernels for the CPU rasterizer: ``native/composite.c``, built on first use, called with ctypes.

The numba kernels (:mod:`pcf_gs.render.cpu_composite`) stay the reference and the fallback. The native ones cover
every float32 render without ``absgrad`` (the training's colour pass, the feature and depth renders). They follow
the same rules and agree with numba to float32 rounding (``tests/render/test_native.py``); ``docs/benchmarks.md`` has the
speed-ups.

Build: the C compiler of the machine (``$CC``, else ``cc``/``gcc``/``clang``) with ``-O3 -march=native``, once per
(source, flags, CPU), into ``$PCF_GS_NATIVE_CACHE`` (default ``~/.cache/pcf_gs/native``; the temp dir when that cannot be written); written to a temporary
name and renamed, so concurrent processes never load a half-written library. Without a compiler, when the build
fails, or on a CPU without AVX2 + FMA, :func:`kernels` returns None and the numba kernels run: nothing here can
make rendering fail. ``PCF_GS_NATIVE=0`` turns the native kernels off.

Threads: numba's own thread team (``numba.get_num_threads()``, so ``NUMBA_NUM_THREADS`` governs both paths): a
``prange`` over the threads calls the C kernel once per thread, and each call takes (image, tile) jobs from a shared
counter until none is left. Threads of our own competed with numba's, which spin for a while after every parallel
region: with 2 cores, a pool of 2 Python threads gained almost nothing over 1 thread.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

SOURCE = Path(__file__).with_name("native") / "composite.c"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-shared", "-fPIC")  # simd pragmas only: no OpenMP runtime

_P = ctypes.c_void_p
_I = ctypes.c_int
_FWD_ARGS = [_P] * 5 + [_I] + [_P] * 2 + [_I] * 6 + [_P] * 4
_BWD_ARGS = [_P] * 5 + [_I] + [_P] * 2 + [_I] * 6 + [_P] * 9
_L = ctypes.c_int64
_PIX_ARGS = [_L, _L] + [_P] * 6 + [_L, _L] + [_P] * 13


def cache_dir() -> Path:
    env = os.environ.get("PCF_GS_NATIVE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pcf_gs" / "native"


def _compiler() -> Optional[str]:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def _cpu_id() -> str:
    """The CPU's feature flags (a library built with -march=native must not be loaded on another CPU)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(extra_flags: tuple[str, ...] = (), directory: Optional[Path] = None) -> Optional[Path]:
    """Compile ``composite.c`` (cached); returns the library's path, or None when it cannot be built."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return None  # the kernels are x86 intrinsics (AVX2 / AVX-512); elsewhere numba runs, without a warning
    cc = _compiler()
    if cc is None:
        return None
    flags = FLAGS + tuple(extra_flags)
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + repr((cc, flags, _cpu_id(), platform.machine())).encode()).hexdigest()[:16]
    name = f"composite-{key}.so"
    dirs = [directory] if directory else [cache_dir(), _temp_cache()]
    for d in dirs:
        if (d / name).exists():
            return d / name
    try:
        out_dir, fd, tmp = _scratch(dirs)
        lib = out_dir / name
        os.close(fd)
        res = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            os.unlink(tmp)
            warnings.warn(f"pcf-gs: native compositing kernels not built ({cc}: {res.stderr.strip()[-200:]}); "
                          "using the numba kernels", RuntimeWarning, stacklevel=2)
            return None
        os.replace(tmp, lib)
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(f"pcf-gs: native compositing kernels not built ({e}); using the numba kernels",
                      RuntimeWarning, stacklevel=2)
        return None
    return lib


def _temp_cache() -> Path:
    """Second choice when the cache directory cannot be written (a read-only home in a container)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"pcf_gs-native-{uid}"


def _scratch(dirs: list[Path]) -> tuple[Path, int, str]:
    """A temporary file for the build in the first directory that can be written: (directory, fd, path)."""
    err: OSError | None = None
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=d)
            return d, fd, tmp
        except OSError as e:
            err = e
    raise err if err else OSError("no cache directory")


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_P)


def _team_runners(lib) -> dict:
    """numba functions that call the C kernels once per thread of numba's team (``prange`` over n threads), the
    arrays passed as pointers. Compiled per process (the library's address is baked in), in about a second."""
    from numba import njit, prange

    fwd, bwd, pix = lib.pcf_composite_fwd, lib.pcf_composite_bwd, lib.pcf_pixel_pass

    @njit(parallel=True)
    def run_fwd(n, m2, cn, op, col, bg, has_bg, to, fi, n_img, w, h, tx, ty, d, out, tf, last, counter):
        for _ in prange(n):
            fwd(m2.ctypes.data, cn.ctypes.data, op.ctypes.data, col.ctypes.data, bg.ctypes.data, has_bg,
                to.ctypes.data, fi.ctypes.data, n_img, w, h, tx, ty, d, out.ctypes.data, tf.ctypes.data,
                last.ctypes.data, counter.ctypes.data)

    @njit(parallel=True)
    def run_bwd(n, m2, cn, op, col, bg, has_bg, to, fi, n_img, w, h, tx, ty, d, tf, last, vo, va,
                s_xy, s_conic, s_opac, s_col, counter):
        for _ in prange(n):
            bwd(m2.ctypes.data, cn.ctypes.data, op.ctypes.data, col.ctypes.data, bg.ctypes.data, has_bg,
                to.ctypes.data, fi.ctypes.data, n_img, w, h, tx, ty, d, tf.ctypes.data, last.ctypes.data,
                vo.ctypes.data, va.ctypes.data, s_xy.ctypes.data, s_conic.ctypes.data, s_opac.ctypes.data,
                s_col.ctypes.data, counter.ctypes.data)

    @njit(parallel=True)
    def run_pix(n, g0, g1, groups, order, jobs, rows, pxs, pys, tx, T, to, fi, m2, cn, op, reach, half_h, sslot,
                s_ids, s_ws, counts_go, t_final, counter):
        for _ in prange(n):
            pix(g0, g1, groups.ctypes.data, order.ctypes.data, jobs.ctypes.data, rows.ctypes.data, pxs.ctypes.data,
                pys.ctypes.data, tx, T, to.ctypes.data, fi.ctypes.data, m2.ctypes.data, cn.ctypes.data,
                op.ctypes.data, reach.ctypes.data, half_h.ctypes.data, sslot.ctypes.data, s_ids.ctypes.data,
                s_ws.ctypes.data, counts_go.ctypes.data, t_final.ctypes.data, counter.ctypes.data)

    return {"pcf_composite_fwd": run_fwd, "pcf_composite_bwd": run_bwd, "pcf_pixel_pass": run_pix}


def _scene_args(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids, n_images, width, height,
                tiles_x, tiles_y) -> tuple:
    """The arguments the forward and backward kernels share, as the C types (float32, int64 offsets, int32 ids)."""
    f32 = (np.ascontiguousarray(a, np.float32) for a in (means2d, conics, opac, colors, backgrounds))
    return (*f32, int(has_bg), np.ascontiguousarray(tile_offsets, np.int64), np.ascontiguousarray(flat_ids, np.int32),
            n_images, width, height, tiles_x, tiles_y, colors.shape[1])


class Kernels:
    """The loaded library: ``isa`` 512 (AVX-512) or 256 (AVX2 + FMA); ``fwd`` / ``bwd`` as the numba kernels."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self.lib.pcf_native_isa.restype = _I
        self.isa = int(self.lib.pcf_native_isa())
        self.lib.pcf_composite_fwd.restype = None
        self.lib.pcf_composite_fwd.argtypes = _FWD_ARGS
        self.lib.pcf_composite_bwd.restype = None
        self.lib.pcf_composite_bwd.argtypes = _BWD_ARGS
        self.lib.pcf_pixel_pass.restype = None
        self.lib.pcf_pixel_pass.argtypes = _PIX_ARGS
        self._runners: dict = {}

    def _run(self, name: str, args) -> None:
        """The C kernel ``name`` on numba's thread count, inside numba's own thread team (a ``prange`` over
        threads, each calling the kernel; the calls share the job counter). Threads of our own would compete
        with the team's threads, which spin for a while after every parallel region (projection, binning)."""
        import numba

        counter = np.zeros(1, np.int64)
        n = max(1, numba.get_num_threads())
        if n == 1:
            getattr(self.lib, name)(*[_ptr(a) if isinstance(a, np.ndarray) else a for a in args], _ptr(counter))
            return
        if not self._runners:
            self._runners = _team_runners(self.lib)
        self._runners[name](n, *args, counter)

    def fwd(self, means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
            n_images, width, height, tiles_x, tiles_y):
        """``cpu_composite.composite_fwd`` (float32): returns out [I,H,W,D], t_final [I,H,W], last [I,H,W]."""
        D = colors.shape[1]
        out = np.empty((n_images, height, width, D), np.float32)
        t_final = np.empty((n_images, height, width), np.float32)
        last = np.empty((n_images, height, width), np.int32)
        self._run("pcf_composite_fwd", (*_scene_args(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets,
                                                     flat_ids, n_images, width, height, tiles_x, tiles_y),
                                        out, t_final, last))
        return out, t_final, last

    def bwd(self, means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
            n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out):
        """``cpu_composite.composite_bwd`` (float32): returns the slots s_xy [M,2], s_conic [M,3],
        s_opac [M], s_col [M,D]."""
        D = colors.shape[1]
        M = flat_ids.shape[0]
        tf = np.ascontiguousarray(t_final, np.float32)
        la = np.ascontiguousarray(last, np.int32)
        vo = np.ascontiguousarray(v_out, np.float32)
        va = np.ascontiguousarray(v_alpha_out, np.float32)
        s_xy = np.zeros((M, 2), np.float32)
        s_conic = np.zeros((M, 3), np.float32)
        s_opac = np.zeros(M, np.float32)
        s_col = np.zeros((M, D), np.float32)
        self._run("pcf_composite_bwd", (*_scene_args(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets,
                                                     flat_ids, n_images, width, height, tiles_x, tiles_y),
                                        tf, la, vo, va, s_xy, s_conic, s_opac, s_col))
        return s_xy, s_conic, s_opac, s_col

    def pixel_pass(self, g0, g1, groups, order, jobs, rows, pxs, pys, tiles_x, T, tile_offsets, flat_ids, means2d,
                   conics, opac, reach, half_h, sslot, s_ids, s_ws, counts_go, t_final):
        """``cpu_pixels._numba_pass`` (float32; the same arguments, less ``ec``): fills the scratch slots, the
        counts and the final transmittances of one batch of groups."""
        c = np.ascontiguousarray
        self._run("pcf_pixel_pass", (int(g0), int(g1), c(groups, np.int64), c(order, np.int64), c(jobs, np.int64),
                                     c(rows, np.int64), c(pxs, np.float32), c(pys, np.float32), int(tiles_x), int(T),
                                     c(tile_offsets, np.int64), c(flat_ids, np.int32), c(means2d, np.float32),
                                     c(conics, np.float32), c(opac, np.float32), c(reach, np.float32),
                                     c(half_h, np.float64), c(sslot, np.int64), s_ids, s_ws, counts_go, t_final))


def load(extra_flags: tuple[str, ...] = (), directory: Optional[Path] = None) -> Optional[Kernels]:
    """Build (cached) and load; None when there is no usable native build (see the module docstring)."""
    path = build(extra_flags, directory)
    if path is None:
        return None
    try:
        k = Kernels(path)
    except OSError as e:
        warnings.warn(f"pcf-gs: native compositing kernels not loaded ({e}); using the numba kernels",
                      RuntimeWarning, stacklevel=2)
        return None
    return k if k.isa else None


@functools.lru_cache(maxsize=1)
def _default() -> Optional[Kernels]:
    return load()


def kernels() -> Optional[Kernels]:
    """The process's native kernels, or None (``PCF_GS_NATIVE=0``, no compiler, failed build, no AVX2 + FMA)."""
    if os.environ.get("PCF_GS_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    return _default()


def usable(colors: np.ndarray, absgrad: bool = False) -> Optional[Kernels]:
    """The native kernels if they cover this render (float32 colors [G, D], D >= 1, no absgrad), else None."""
    if absgrad or colors.dtype != np.float32 or colors.shape[1] < 1:
        return None
    return kernels()
