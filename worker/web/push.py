"""`POST /lazada/push`: Lazada's push messages (lazop-api.md section 11, decision L15).

A message is verified against the `Authorization` header: the hex HMAC-SHA256 of an app key
followed by the raw body, keyed with that app's secret, for the apps of the stored `lazop`
accounts. A trade order message (`message_type` 0) for the seller of a stored account enqueues
a fetch of that order for the account, unless one is due and sent already; the answer is 200
at once, and the order sync stays the net for a push lost on the way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Request, Response

from worker.accounts.secrets import secret_box
from worker.broker.dispatch import Message
from worker.db.models import Account, Order
from worker.services.orders import fetch_message
from worker.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
APPS_FOR = 30.0  # seconds the apps' secrets and sellers are kept before they are read again
RELOAD_AFTER = 5.0  # a message no app verifies reads them again at most this often
RECENT_FOR = 10.0  # seconds a fetch sent for an order is not sent again (a push per order line)
TRADE_ORDER = 0


class PushReceiver:
    """Verifies and handles push messages; one per `web` process, thread-safe."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        send: Callable[[Message], None],
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.send = send
        self._lock = threading.Lock()
        self._apps: dict[str, str] = {}  # app key -> app secret
        self._sellers: dict[tuple[str, str], str] = {}  # (app key, seller id) -> account
        self._read_at = -1e9
        # (account, order id) -> when its fetch was sent, oldest first: expired from the front.
        self._recent: OrderedDict[tuple[str, int], float] = OrderedDict()
        # The order's row is read outside a transaction: no BEGIN and ROLLBACK around the one
        # read, which is most of what a push waits for besides the broker.
        self._reads = sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")

    def receive(self, request: Request) -> Response:
        body = request.get_data(cache=False, as_text=False)[: MAX_BODY + 1]
        if len(body) > MAX_BODY:
            return _answer(413, "too big")
        app_key = self._verified(request.headers.get("Authorization", ""), body)
        if app_key is None:
            return _answer(401, "signature does not verify")
        try:
            message = json.loads(body)
        except ValueError:
            return _answer(400, "not JSON")
        if not isinstance(message, dict) or message.get("message_type") != TRADE_ORDER:
            return _answer(200, "ok")  # verified, of a kind this worker does not act on
        data = message.get("data")
        order_id = data.get("trade_order_id") if isinstance(data, dict) else None
        seller_id = message.get("seller_id")
        if not _positive_int(order_id) or seller_id in (None, ""):
            return _answer(400, "a trade order message needs seller_id and data.trade_order_id")
        account = self._sellers.get((app_key, str(seller_id)))
        if account is None and time.monotonic() - self._read_at > RELOAD_AFTER:
            self._apps_now(force=True)  # an account connected since the last read
            account = self._sellers.get((app_key, str(seller_id)))
        if account is None:
            log.info("push for seller %s of no stored account; ignored", seller_id)
            return _answer(200, "ok")
        self._fetch(account, int(str(order_id)))
        return _answer(200, "ok")

    # -- verification -------------------------------------------------------------------------

    def _verified(self, signature: str, body: bytes) -> str | None:
        """The app key whose secret signed `body`, or None."""
        signature = signature.strip().lower()
        if not signature:
            return None
        found = self._match(self._apps_now(), signature, body)
        if found is None and time.monotonic() - self._read_at > RELOAD_AFTER:
            found = self._match(self._apps_now(force=True), signature, body)
        return found

    @staticmethod
    def _match(apps: dict[str, str], signature: str, body: bytes) -> str | None:
        for app_key, secret in apps.items():
            expected = hmac.new(
                secret.encode("utf-8"), app_key.encode("utf-8") + body, hashlib.sha256
            ).hexdigest()
            if hmac.compare_digest(expected, signature):
                return app_key
        return None

    def _apps_now(self, force: bool = False) -> dict[str, str]:
        with self._lock:
            if force or time.monotonic() - self._read_at > APPS_FOR:
                box = secret_box(self.settings)
                apps: dict[str, str] = {}
                sellers: dict[tuple[str, str], str] = {}
                with self.sessions() as session:
                    for name, credentials, secret, seller_id in session.execute(
                        select(
                            Account.name, Account.credentials, Account.secret, Account.seller_id
                        ).where(Account.platform == "lazop")
                    ):
                        app_key = (credentials or {}).get("app_key")
                        if app_key and secret:
                            apps[app_key] = box.decrypt(secret, "app secret")
                        if app_key and seller_id:
                            sellers[(app_key, seller_id)] = name
                self._apps, self._sellers = apps, sellers
                self._read_at = time.monotonic()
            return self._apps

    # -- handling -----------------------------------------------------------------------------

    def _fetch(self, account: str, order_id: int) -> None:
        """Send a fetch unless one was sent for the order moments ago or is due and sent."""
        now = time.monotonic()
        with self._lock:
            while self._recent and now - next(iter(self._recent.values())) >= RECENT_FOR:
                self._recent.popitem(last=False)
            if (account, order_id) in self._recent:
                return
            self._recent[(account, order_id)] = now
        wall = datetime.now(UTC)
        with self._reads.connect() as connection:
            row = connection.execute(
                select(Order.next_attempt_at, Order.dispatched_until).where(
                    Order.account == account, Order.order_id == order_id
                )
            ).one_or_none()
        if (
            row is not None
            and row.next_attempt_at is not None
            and row.next_attempt_at <= wall
            and row.dispatched_until is not None
            and row.dispatched_until > wall
        ):
            return  # a fetch is pending: its message is on the broker
        self.send(fetch_message(account, order_id))


def _positive_int(value: object) -> bool:
    text = str(value)
    return isinstance(value, int | str) and text.isascii() and text.isdigit() and int(text) > 0


def _answer(status: int, text: str) -> Response:
    return Response(text + "\n", status, mimetype="text/plain")
