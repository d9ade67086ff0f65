"""``python -m worker.sandbox [options]``: the sandbox in the foreground, for other processes.

Prints the URL on the first line of standard output (useful with ``--port 0``), then serves
until Ctrl-C or SIGTERM. ``--platform lazop`` serves the Open Platform sandbox instead: its
first line is the root URL (gateway ``{url}rest``, auth ``{url}auth/rest``).
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import Any

from worker.sandbox.http_server import SandboxServer
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop import config as lazop_config
from worker.sandbox.sellercenter import Sandbox, add_arguments, config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.sandbox", description=__doc__)
    parser.add_argument("--platform", choices=("sellercenter", "lazop"), default="sellercenter")
    add_arguments(parser)
    lazop_config.add_arguments(parser)
    args = parser.parse_args(argv)
    sandbox: SandboxServer[Any, Any]
    try:
        if args.platform == "lazop":
            config = lazop_config.config_from_args(args)
            sandbox = LazopSandbox(config, host=args.host, port=args.port)
        else:
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
