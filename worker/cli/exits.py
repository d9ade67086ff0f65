"""The command line's exit statuses, and the error that ends a command with status 1."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's status for a command stopped by Ctrl-C (128 + SIGINT)


class CommandFailed(RuntimeError):
    """The work or a service failed (exit 1); the message is shown as one line."""
