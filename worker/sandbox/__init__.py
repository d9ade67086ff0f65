"""The project's own local Seller Center: a real HTTP server behaving like the legacy API.

The worker is developed, tested and benchmarked against it with no network. It implements the
decisions D1-D8 of the research notes (docs: /work/shared/sellercenter-api.md, section 8).
The Open Platform's sandbox is ``worker.sandbox.lazop``; both are built on the shared server,
faults, call record and rate limit of ``http_server``, ``faults``, ``ledger`` and ``throttle``.
"""

from worker.sandbox.config import SandboxConfig, add_arguments, config_from_args
from worker.sandbox.ledger import ServedCall
from worker.sandbox.server import Sandbox

__all__ = ["Sandbox", "SandboxConfig", "ServedCall", "add_arguments", "config_from_args"]
