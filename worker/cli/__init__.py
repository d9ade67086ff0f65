"""The `lazada-worker` command line: a module per command group, `main` the entry point."""
