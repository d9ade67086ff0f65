"""Benchmarks of the worker against the sandbox, one command line over scenarios:

    python -m bench SCENARIO [options]      # python -m bench SCENARIO --help for its options

Scenarios, by family (a module each):
- throughput (the rate limit off): removal, orders, memory, ratelimit
- overhead: overhead (the worker against a bare client loop), cost (CPU per call)
- beat_cost: beat-cost (statements and CPU per tick of each beat task, idle accounts)
- call_cost: call-cost (worker CPU per call at the rate limit, limit off, a bare loop; either
  platform)
- scale: scale-accounts (1,000 accounts at 0.1 calls/s and others at 100 calls/s together),
  ceiling (the most calls/s the workers sustain, per core, against a bare loop)
- fair (at the rate limit): fair-single, fair-mixed, fair-images, fair-four, fair-accounts
- recovery: recovery (kill -9 mid-job)
- polling: polling (image jobs)
- embedded_broker: embedded-broker (kombu's server-less transports)
- limiter (the rate limiter alone): slot-calendar, limiter-compare
- order_sync: order-sync-first (the first sync of 10,000 orders against the fewest calls),
  order-sync-steady (accounts whose orders change every second: listing-to-event delay, CPU
  per order), order-sync-beside-removal (a sync and a removal sharing one account's limit)
- quick: every family briefly (CI)
- tools: plots (PNGs from --json figures), profile-shares (a --profile run's samples)

Figures are printed, not asserted; bench/RESULTS.md holds them with their commands.
"""
