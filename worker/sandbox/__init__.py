"""The project's own local stand-ins for the platforms' APIs: real HTTP servers, no network.

This package is what every sandbox is built on:

- ``http_server``: :class:`SandboxServer`, the server a platform subclasses (lifecycle,
  connections, bodies, latency, faults, the ledger, stats and the ``/_sandbox/`` control
  endpoints), and :class:`Call`, one API call as a platform reads it;
- ``knobs``: :class:`KnobSet`, what a config dataclass inherits (environment, options, JSON,
  run-time changes), with the parsers and checks of the shared knobs;
- ``faults``, ``ledger``, ``throttle``, ``replies``, ``routes``: fault draws, the record of
  served calls, the rate limit, the HTTP reply, and a route table for a method-and-path API;
- ``catalogue``, ``images``, ``removals``, ``request_bodies``: the simulated seller both Lazada
  sandboxes serve (orders, image jobs, removal rules, the XML payloads).

The platforms are ``worker.sandbox.sellercenter`` (the legacy Seller Center API) and
``worker.sandbox.lazop`` (the Lazada Open Platform); ``python -m worker.sandbox`` serves either.
"""

from worker.sandbox.http_server import Body, Call, SandboxServer, State
from worker.sandbox.knobs import KnobSet
from worker.sandbox.ledger import ServedCall
from worker.sandbox.replies import Reply

__all__ = ["Body", "Call", "KnobSet", "Reply", "SandboxServer", "ServedCall", "State"]
