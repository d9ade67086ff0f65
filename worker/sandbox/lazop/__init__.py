"""The project's own local Lazada Open Platform (LAZOP): a real HTTP server for several sellers.

It implements decisions L1-L10 of the research notes (/work/shared/lazop-api.md, section 9) and
shares the legacy sandbox's server, faults, call record and rate limit (worker.sandbox).
"""

from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.server import LazopSandbox

__all__ = ["LazopSandbox", "LazopSandboxConfig"]
