"""The project's own local Lazada Open Platform (LAZOP): a real HTTP server for several sellers.

It implements decisions L1-L10 (docs/decisions.md), on the shared server of
:mod:`worker.sandbox` and the orders, image jobs and removal rules it shares with the legacy
sandbox.
"""

from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.server import LazopSandbox

__all__ = ["LazopSandbox", "LazopSandboxConfig"]
