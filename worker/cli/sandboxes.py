"""`lazada-worker sandbox`: a local sandbox of either platform's API, until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

from worker.inputs import InvalidInput
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop import config as lazop_config
from worker.sandbox.sellercenter import Sandbox, config_from_args


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve the sandbox --platform names; an option of the other platform is bad input."""
    lazop = args.platform == "lazop"
    foreign = (
        lazop_config.legacy_only_options(args) if lazop else lazop_config.lazop_only_options(args)
    )
    if foreign:
        other = "sellercenter" if lazop else "lazop"
        raise InvalidInput(f"{', '.join(foreign)}: only for --platform {other}")
    try:
        config = lazop_config.config_from_args(args) if lazop else config_from_args(args)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if isinstance(config, lazop_config.LazopSandboxConfig):
        sandbox: Sandbox | LazopSandbox = LazopSandbox(config, host=args.host, port=args.port)
        print(_lazop_banner(sandbox.start()), file=sys.stderr)
    else:
        sandbox = Sandbox(config, host=args.host, port=args.port).start()
        # On standard output, as lines a shell can paste: a newcomer's worker needs these
        # three, and the key is the sandbox's own (not a secret of any real account).
        print(
            f"Seller Center sandbox at {sandbox.url}; point a worker at it with:\n"
            f"  export LAZADA_API_URL={shlex.quote(sandbox.url)}\n"
            f"  export LAZADA_USER_ID={shlex.quote(config.user_id)}\n"
            f"  export LAZADA_API_KEY={shlex.quote(config.api_key)}",
            flush=True,
        )
        print("Ctrl-C stops it", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    finally:
        sandbox.stop()


def _lazop_banner(sandbox: Any) -> str:
    """What an operator needs to connect an account to the LAZOP sandbox. Its app secret and
    codes are the sandbox's own test values, not real secrets, so they are printed."""
    lines = [
        "LAZOP sandbox (the sandbox's own test values, not real secrets); Ctrl-C stops it",
        f"  gateway URL:  {sandbox.api_url}",
        f"  auth URL:     {sandbox.auth_url}",
        f"  app key:      {sandbox.app_key}",
        f"  app secret:   {sandbox.app_secret}",
    ]
    for seller in sandbox.sellers:
        code = sandbox.authorization_code(seller)
        lines.append(f"  authorization code for {seller}: {code} (single use, 30 minutes)")
    lines.append(f"  more codes:   POST {sandbox.url}_sandbox/authorization-code?seller=NAME")
    return "\n".join(lines)
