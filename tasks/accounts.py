"""Account tasks: the Open Platform's tokens, refreshed ahead of expiry (decision L3)."""

from __future__ import annotations

from tasks.base import ServiceTask
from worker.accounts import tokens
from worker.accounts.platforms import token_issuer
from worker.celery_app import app


@app.task(name="lazada.refresh_tokens", base=ServiceTask, bind=True)
def refresh_tokens(self: ServiceTask) -> None:
    """Periodic: every ready lazop account whose access token is near its end gets a new pair,
    by one worker at a time (the account's refresh lease)."""
    platforms = self.platforms

    def client_for(name: str):  # type: ignore[no-untyped-def]
        return token_issuer(self.settings, platforms.account(name))

    for name in tokens.refresh_due(self.sessions, self.settings, client_for):
        platforms.forget_account(name)
