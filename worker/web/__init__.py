"""The operator's console (`lazada-worker web`): server-rendered pages read from the database,
buttons that call the services the command line calls, and the endpoints for machines
(/healthz, /metrics, /lazada/push)."""
