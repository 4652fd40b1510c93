"""`wardrobe`: one command for serving, working, administering and training."""
from __future__ import annotations

import argparse
import sys

from cli import catalogue, model, services


def cmd_demo(a) -> int:
    from cli.demo import run_demo

    return run_demo(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wardrobe", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    services.add_parsers(sub)
    catalogue.add_parsers(sub)

    s = sub.add_parser("demo", help="start everything embedded, upload the example photos, print the catalogue")
    s.add_argument("--photos", default=None, help="folder of photos (default: examples/photos)")
    s.add_argument("--data-dir", default=None, help="where the demo keeps its database and files")
    s.add_argument("--out", default=None, help="folder for the cut-outs")
    s.add_argument("--port", type=int, default=8765, help="the API's and page's port (default 8765)")
    s.add_argument("--keep-running", action="store_true",
                   help="leave the API and worker running after the catalogue is printed (stop them with the pids shown)")
    s.set_defaults(fn=cmd_demo)

    model.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from segmentation.runtime import ultralytics_offline

    ultralytics_offline()  # every command (train, evaluate, predict, worker ...): no installs or network from Ultralytics
    args = build_parser().parse_args(argv)
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
