"""The project's own local Seller Center: a real HTTP server behaving like the legacy API.

The worker is developed, tested and benchmarked against it with no network. It implements
decisions D1-D8 (docs/decisions.md), on the shared server of :mod:`worker.sandbox`.
"""

from worker.sandbox.ledger import ServedCall
from worker.sandbox.sellercenter.config import SandboxConfig, add_arguments, config_from_args
from worker.sandbox.sellercenter.server import Sandbox

__all__ = ["Sandbox", "SandboxConfig", "ServedCall", "add_arguments", "config_from_args"]
