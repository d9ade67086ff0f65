"""``python -m worker.sandbox [options]``: the sandbox in the foreground, for other processes.

Prints the URL on the first line of standard output (useful with ``--port 0``), then serves
until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from worker.sandbox.config import add_arguments, config_from_args
from worker.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.sandbox", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        sandbox = Sandbox(config_from_args(args), host=args.host, port=args.port)
    except (ValueError, OSError) as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    print(sandbox.url, flush=True)
    sandbox.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
