"""`wardrobe`: one command for serving, working, administering and training."""
from __future__ import annotations

import argparse
import os
import sys

from cli import catalogue, model, services


def cmd_demo(a) -> int:
    from cli.demo import run_demo

    return run_demo(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wardrobe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The client commands (upload, jobs, retry, cancel, items, item, delete, export, webhooks) talk to\n"
               "the API at WARDROBE_URL (default http://127.0.0.1:8000; a scheme-less 127.0.0.1:8000 means http)\n"
               "with the token in WARDROBE_TOKEN (`export WARDROBE_TOKEN=$(wardrobe users create NAME)`), or\n"
               "--url and --token. The other commands read the server's settings from WARDROBE_* variables.")
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
    return run(args.fn, args)


def run(fn, args) -> int:
    """The command, its user-facing failures as one line on stderr and a non-zero exit, never a traceback:
    a refusal or a message it exits with, a file that is not there, a closed pipe (`| head`), Ctrl-C."""
    from cli.client import end_bar
    from core.config import SettingError

    try:
        code = fn(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        end_bar()
        line = e.code.strip()
        print(line if line.startswith("error:") else f"error: {line}", file=sys.stderr)
        return 1
    except SettingError as e:  # a setting the process cannot start with: which one, and why
        end_bar()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`wardrobe items | head -1`): stop quietly, as cat or grep would; stdout is
        # pointed at /dev/null so the interpreter's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        end_bar()
        print(f"error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        end_bar()
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
