"""Command line: `python -m stackctl <command>` (or `stackctl` in the project venv).

Errors are one line on stderr (`stackctl secrets: error: ...`), exit status 1; usage
errors exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stackctl import REPO_ROOT, backup, chartdocs, envfile, urls
from stackctl import secrets as secrets_cmd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sec = sub.add_parser(
        "secrets",
        help="create .env secrets, the htpasswd, the local CA and the TLS certificate",
        description=secrets_cmd.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sec.add_argument(
        "--root",
        type=Path,
        default=Path(os.environ.get("ROOT_DIR") or REPO_ROOT),
        help="directory holding .env and .secrets/ (default: the repository root)",
    )
    sec.add_argument(
        "--force-certs",
        action="store_true",
        default=os.environ.get("FORCE_CERTS") == "1",
        help="recreate the CA and the certificate (also FORCE_CERTS=1)",
    )
    show = sub.add_parser(
        "urls",
        help="print the stack's URLs and a smoke-test command (end of make up)",
        description=urls.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    show.add_argument(
        "--edge-only", action="store_true", help="the Traefik stack only (make up_traefik)"
    )
    show.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait (bounded) until Traefik routes the stack",
    )
    docs = sub.add_parser(
        "chart-docs",
        help="generate the chart README values table and values.schema.json from values.yaml",
        description=chartdocs.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    docs.add_argument("--chart", type=Path, default=REPO_ROOT / "helm" / "wallet-stack")
    docs.add_argument("--check", action="store_true", help="only fail when they are stale")
    bak = sub.add_parser(
        "backup",
        help="stream a consistent Redis snapshot into backups/ (with a .sha256)",
        description=backup.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bak.add_argument("--dir", type=Path, default=REPO_ROOT / "backups", help="target directory")
    res = sub.add_parser(
        "restore",
        help="put a snapshot from make backup back (stops the API meanwhile)",
        description=backup.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    res.add_argument("file", type=Path, help="backups/redis-<time>.rdb")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "secrets":
        try:
            if not args.root.is_dir():
                raise envfile.SettingError(f"{args.root} is not a directory")
            secrets_cmd.run(args.root, force_certs=args.force_certs)
        except (envfile.SettingError, OSError) as exc:
            print(f"stackctl secrets: error: {exc}", file=sys.stderr)
            return 1
    elif args.command in ("backup", "restore"):
        try:
            if args.command == "backup":
                path = backup.backup(args.dir)
                print(f"backup: {path} ({path.stat().st_size} bytes, checksum {path.name}.sha256)")
            else:
                print(f"restore: {backup.restore(args.file)} from {args.file}")
        except backup.BackupError as exc:
            print(f"stackctl {args.command}: error: {exc}", file=sys.stderr)
            return 1
    elif args.command == "urls":
        try:
            if args.wait > 0:
                urls.wait_routed(args.root, wallet=not args.edge_only, timeout=args.wait)
            print("\n".join(urls.lines(args.root, wallet=not args.edge_only)))
        except envfile.SettingError as exc:
            print(f"stackctl urls: error: {exc}", file=sys.stderr)
            return 1
    elif args.command == "chart-docs":
        try:
            stale = chartdocs.run(args.chart, check=args.check)
        except (chartdocs.ChartDocsError, OSError) as exc:
            print(f"stackctl chart-docs: error: {exc}", file=sys.stderr)
            return 1
        for name in stale:
            verb = "is stale (run `make chart-docs`)" if args.check else "regenerated"
            print(f"stackctl chart-docs: {args.chart / name} {verb}", file=sys.stderr)
        return 1 if stale and args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
