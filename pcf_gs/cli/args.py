"""Argument groups and config resolution shared by the ``pcf-gs`` commands."""

from __future__ import annotations

import argparse

from pcf_gs.errors import UserError


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="NAME|PATH", help="YAML preset from configs/ (e.g. default, cpu_fast) or a file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting (repeatable), e.g. --set train.iterations=2000",
    )


def add_data_args(p: argparse.ArgumentParser) -> None:
    from pcf_gs.data.detect import LAYOUTS

    p.add_argument("--format", choices=["auto", *LAYOUTS], help="scene layout (default: detect)")
    p.add_argument("--downscale", type=int, help="shrink images by this integer factor on load (COLMAP/nerfstudio: "
                   "images_N/ is used when it exists)")
    p.add_argument("--skip-missing", action="store_true", default=None,
                   help="COLMAP/nerfstudio: train without images the poses list but the disk lacks (default: error)")


def add_server_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help=f"address {what} listens on (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8080, help=f"port of {what} (default: 8080; the next free one if taken)")


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides followed by the ones the data/device flags stand for (flags win)."""
    out = list(args.overrides)
    if getattr(args, "format", None):
        out.append(f"data.format={args.format}")
    if getattr(args, "downscale", None) is not None:  # 0 is a value to reject, not "not given"
        from pcf_gs.config import check_setting

        try:
            check_setting("data.downscale", args.downscale)  # the same range check as --set data.downscale
        except UserError as e:
            raise UserError(f"--downscale {args.downscale}: {str(e).split(': ', 1)[-1]}") from None
        out.append(f"data.downscale={args.downscale}")
    if getattr(args, "skip_missing", None):
        out.append("data.skip_missing=true")
    if getattr(args, "device", None):
        out.append(f"device={args.device}")
    return out


def resolve_config(args: argparse.Namespace):
    from pcf_gs.config import load_config

    return load_config(args.config, flag_overrides(args))


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    h = str(host).strip().strip("[]").lower()
    if h in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name or interface address: reachable from elsewhere


def exposure_warning(host: str, export_dir: str | None = "viewer_exports") -> str | None:
    """The one-line warning printed when the viewer listens on a non-loopback address (None on loopback)."""
    if is_loopback(host):
        return None
    where = f"into {export_dir}/" if export_dir else "into the export folder"
    return (f"warning: --host {host} is not loopback: anyone who can reach this port sees the scene and can press "
            f"Export, which makes this process write PLY files {where} (no authentication); use an SSH tunnel "
            f"to 127.0.0.1 on shared networks")
