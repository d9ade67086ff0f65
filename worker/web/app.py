"""The console as a WSGI application (werkzeug routing, Jinja2 pages), served by `lazada-worker
web` (worker.cli.web). Pages read the database; buttons are POST forms with a CSRF token that
call the same services as the command line and redirect to a page that says what happened."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect, send_from_directory
from werkzeug.wrappers import Request, Response

from worker.accounts import store as accounts
from worker.accounts import tokens
from worker.accounts.platforms import connection, token_issuer
from worker.broker.dispatch import Message
from worker.db.engine import core_transaction, get_engine
from worker.db.models import ImageJob, Order
from worker.inputs import InvalidInput, clean_key, clean_order_id
from worker.outbox.events import deliver_message, redeliver, take_recorded
from worker.platforms import ApiError
from worker.ratelimit.runners import runners_for
from worker.services import documents, job_control
from worker.services.order_sync import SYNC_TASK, sync_state, synced_fields
from worker.settings import Settings
from worker.web import health, listings, metrics, oauth, push, security

log = logging.getLogger(__name__)

NOTICE_COOKIE = "lw_notice"
STATIC = __file__.rsplit("/", 1)[0] + "/static"
MAX_PAGE = 100_000


class BadRequest(Exception):
    """Bad input to a page or a button: 400 with the message, nothing changed."""


class Console:
    """The WSGI application: one per `web` process, any number of threads."""

    def __init__(
        self,
        settings: Settings,
        public_url: str,
        password: str | None = None,
        send: Callable[[Message], None] | None = None,
    ) -> None:
        self.settings = settings
        self.public_url = public_url
        self.password = password
        self.hosts = security.allowed_hosts(public_url)
        self.secure_cookies = public_url.startswith("https://")
        self.sessions: sessionmaker[Session] = sessionmaker(
            get_engine(settings.database_url), expire_on_commit=False
        )
        self.send = send or _send_task
        self.pushes = push.PushReceiver(self.sessions, settings, self.send)
        self.templates = Environment(
            loader=PackageLoader("worker.web", "templates"),
            autoescape=select_autoescape(default=True),
        )
        self.templates.globals.update(quote=lambda v: quote(str(v), safe=""))
        self.urls = Map(
            [
                Rule("/", endpoint="overview", methods=["GET"]),
                Rule("/jobs", endpoint="jobs", methods=["GET"]),
                Rule("/jobs/retry", endpoint="retry", methods=["POST"]),
                Rule("/jobs/cancel", endpoint="cancel", methods=["POST"]),
                Rule("/jobs/<account>/<path:key>", endpoint="job", methods=["GET"]),
                Rule("/orders", endpoint="orders", methods=["GET"]),
                Rule("/orders/<account>/<order_id>", endpoint="order", methods=["GET"]),
                Rule("/image-jobs", endpoint="image_jobs", methods=["GET"]),
                Rule("/failures", endpoint="failures", methods=["GET"]),
                Rule("/events", endpoint="events", methods=["GET"]),
                Rule("/events/redeliver", endpoint="redeliver", methods=["POST"]),
                Rule("/accounts", endpoint="accounts", methods=["GET"]),
                Rule("/accounts/connect", endpoint="connect", methods=["POST"]),
                Rule("/accounts/sync-orders", endpoint="sync_orders", methods=["POST"]),
                Rule("/accounts/<name>", endpoint="account", methods=["GET"]),
                Rule("/oauth/callback", endpoint="callback", methods=["GET"]),
                Rule("/static/<path:name>", endpoint="static", methods=["GET"]),
                Rule("/healthz", endpoint="healthz", methods=["GET"]),
                Rule("/metrics", endpoint="metrics", methods=["GET"]),
                Rule("/lazada/push", endpoint="push", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    # -- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self._respond(request)
        # The callback's address holds a code: no page may send it on as a Referer.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        adapter = self.urls.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
        except HTTPException as exc:
            return self._error(request, exc.code or 404, exc.description or "not found")
        machine = {
            "healthz": lambda: health.healthz(self.settings),
            "metrics": lambda: metrics.scrape(self.sessions, self.settings),
            "push": lambda: self.pushes.receive(request),
        }
        if endpoint in machine:
            return machine[endpoint]()
        refused = self._refused(request)
        if refused is not None:
            return refused
        if request.method == "POST" and not security.csrf_valid(request):
            return self._error(
                request, 403, "the form's token is missing or stale: reload the page and try again"
            )
        try:
            response: Response = getattr(self, f"page_{endpoint}")(request, **values)
        except (BadRequest, InvalidInput) as exc:
            return self._error(request, 400, str(exc))
        except NotFound as exc:
            return self._error(request, 404, exc.description or "not found")
        if request.cookies.get(NOTICE_COOKIE) and request.method == "GET":
            response.delete_cookie(NOTICE_COOKIE)
        return response

    def _refused(self, request: Request) -> Response | None:
        """Pages answer only for a Host of loopback or LAZADA_PUBLIC_URL, and the password."""
        if security.request_host(request) not in self.hosts:
            return Response(
                "this console answers only for its own address (LAZADA_PUBLIC_URL or loopback)\n",
                400,
                mimetype="text/plain",
            )
        if self.password is not None and not security.password_matches(request, self.password):
            return Response(
                "the console's password is needed\n",
                401,
                {"WWW-Authenticate": 'Basic realm="lazada-worker", charset="UTF-8"'},
                mimetype="text/plain",
            )
        return None

    # -- rendering -----------------------------------------------------------------------------

    def _render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        token = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf_token()
        html = self.templates.get_template(template).render(
            csrf=token,
            notice=request.cookies.get(NOTICE_COOKIE),
            path=request.path,
            **context,
        )
        response = Response(html, status, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        if request.cookies.get(security.CSRF_COOKIE) != token:
            response.set_cookie(
                security.CSRF_COOKIE,
                token,
                httponly=True,
                samesite="Lax",
                secure=self.secure_cookies,
                path="/",
            )
        return response

    def _error(self, request: Request, status: int, message: str) -> Response:
        return self._render(request, "message.html", status, title=f"{status}", message=message)

    def _done(self, location: str, notice: str) -> Response:
        """Redirect after a POST (303) to a page that shows `notice` once."""
        response = redirect(location, 303)
        response.set_cookie(
            NOTICE_COOKIE, notice[:500], httponly=True, samesite="Lax", secure=self.secure_cookies
        )
        return response

    # -- inputs --------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        with self.sessions() as session:
            return [name for name, _ in listings.account_states(session, self.settings)]

    def _account(self, value: str | None, names: list[str] | None = None) -> str | None:
        """An account filter: none (every account) or the name of one there is."""
        if not value:
            return None
        if value not in (names if names is not None else self._names()):
            raise BadRequest(f"no account named {value[:80]!r}: see the accounts page")
        return value

    @staticmethod
    def _choice(value: str | None, choices: tuple[str, ...], what: str) -> str | None:
        if not value:
            return None
        if value not in choices:
            raise BadRequest(f"{what} {value[:40]!r} is not one of {', '.join(choices)}")
        return value

    @staticmethod
    def _page_number(request: Request) -> int:
        raw = request.args.get("page", "1")
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise BadRequest(f"page must be a whole number from 1 to {MAX_PAGE}")
        return int(raw)

    def _list(
        self,
        request: Request,
        template: str,
        states: tuple[str, ...],
        read: Callable[[Session, str | None, str | None, int], listings.Page],
        title: str,
        filter_name: str = "state",
    ) -> Response:
        names = self._names()
        account = self._account(request.args.get("account"), names)
        state = self._choice(request.args.get(filter_name), states, filter_name)
        number = self._page_number(request)
        with self.sessions() as session:
            page = read(session, account, state, number)
        filters = {"account": account or "", filter_name: state or ""}

        def page_link(n: int) -> str:
            query = {k: v for k, v in {**filters, "page": str(n)}.items() if v}
            return f"{request.path}?{urlencode(query)}"

        return self._render(
            request,
            template,
            title=title,
            page=page,
            names=names,
            states=states,
            account=account,
            state=state,
            filter_name=filter_name,
            page_link=page_link,
        )

    # -- pages ---------------------------------------------------------------------------------

    def page_overview(self, request: Request) -> Response:
        now = datetime.now(UTC)
        with self.sessions() as session:
            listings.read_only(session)  # one snapshot: every figure of the page agrees
            states = listings.account_states(session, self.settings, now)
            jobs = listings.removal_job_counts(session)
            orders = listings.grouped(session, Order)
            images = listings.grouped(session, ImageJob)
            failures = listings.failure_counts(session)
            events = listings.event_counts(session)
            running = listings.removal_jobs(session, None, "running", 1, size=10).rows
            due = listings.due_work(session, now)
        names = sorted(
            {name for name, _ in states}
            | {a for a, _ in jobs}
            | {a for a, _ in orders}
            | {a for a, _ in images}
        )
        rows = [
            {
                "name": name,
                "jobs": {s: jobs.get((name, s), 0) for s in listings.JOB_STATES},
                "orders": {s: orders.get((name, s), 0) for s in listings.ORDER_STATES},
                "images": {s: images.get((name, s), 0) for s in listings.IMAGE_STATES},
                "failures": failures.get(name, 0),
                "events": {s: events.get((name, s), 0) for s in ("pending", "dead")},
            }
            for name in names
        ]
        return self._render(
            request,
            "overview.html",
            title="Overview",
            rows=rows,
            parked=[{"name": name, "state": state} for name, state in states if state != "ready"],
            running=running,
            due=due,
        )

    def page_jobs(self, request: Request) -> Response:
        return self._list(
            request, "jobs.html", listings.JOB_STATES, listings.removal_jobs, "Removal jobs"
        )

    def page_job(self, request: Request, account: str, key: str) -> Response:
        account_name = self._account(account)
        key_value = clean_key(key)
        state = self._choice(request.args.get("state"), listings.SKU_STATES, "state")
        number = self._page_number(request)
        with self.sessions() as session:
            found = listings.job_page(session, account_name or "", key_value or "", state, number)
        if found is None:
            raise NotFound(f"no removal job with key {key[:80]!r} for account {account!r}")

        def page_link(n: int) -> str:
            query = {"state": state or "", "page": str(n)}
            return f"{request.path}?{urlencode({k: v for k, v in query.items() if v})}"

        return self._render(
            request,
            "job.html",
            title=f"Job {key}",
            job=found.job,
            reasons=found.reasons,
            skus=found.skus,
            more=found.more,
            number=number,
            state=state,
            states=listings.SKU_STATES,
            page_link=page_link,
        )

    def page_orders(self, request: Request) -> Response:
        return self._list(request, "orders.html", listings.ORDER_STATES, listings.orders, "Orders")

    def page_order(self, request: Request, account: str, order_id: str) -> Response:
        name = self._account(account) or ""
        number = clean_order_id(order_id)
        with self.sessions() as session:
            order = documents.order(session, name, number)
        if order is None:
            raise NotFound(f"no stored order {number} for account {account!r}")
        return self._render(request, "order.html", title=f"Order {number}", order=order)

    def page_image_jobs(self, request: Request) -> Response:
        return self._list(
            request, "image_jobs.html", listings.IMAGE_STATES, listings.image_jobs, "Image jobs"
        )

    def page_failures(self, request: Request) -> Response:
        return self._list(
            request,
            "failures.html",
            listings.FAILURE_KINDS,
            listings.failures,
            "Failures",
            filter_name="kind",
        )

    def page_events(self, request: Request) -> Response:
        return self._list(request, "events.html", listings.EVENT_STATES, listings.events, "Events")

    def page_accounts(self, request: Request) -> Response:
        state = self._choice(request.args.get("state"), listings.ACCOUNT_STATES, "state")
        with self.sessions() as session:
            found = [
                accounts.account_document(a) for a in accounts.list_accounts(session, self.settings)
            ]
        rows = [d for d in found if state is None or d["state"] == state]
        return self._render(
            request,
            "accounts.html",
            title="Accounts",
            rows=rows,
            state=state,
            states=listings.ACCOUNT_STATES,
        )

    def page_account(self, request: Request, name: str) -> Response:
        with self.sessions() as session:
            try:
                account = accounts.get_account(session, self.settings, name)
            except accounts.UnknownAccount as exc:
                raise NotFound(str(exc)) from None
            document = {**accounts.account_document(account), **synced_fields(session, name)}
        return self._render(
            request,
            "account.html",
            title=f"Account {name}",
            account=document,
            connectable=account.entry.authorized_by_seller,
            redirect_uri=self._redirect_uri(),
        )

    # -- buttons -------------------------------------------------------------------------------

    def _form_job(self, request: Request) -> tuple[str, str]:
        account = self._account(request.form.get("account"))
        key = clean_key(request.form.get("key"))
        if account is None or key is None:
            raise BadRequest("a job's account and key are needed")
        return account, key

    def page_retry(self, request: Request) -> Response:
        account, key = self._form_job(request)
        with self.sessions() as session:
            rate = accounts.get_account(session, self.settings, account).rate_limit
        outcome = job_control.retry(self.sessions, self.settings, account, key, runners_for(rate))
        self._publish(outcome.messages)
        if outcome.changed:
            notice = f"job {key}: {outcome.changed} failed SKUs are sent again"
        elif outcome.done:
            notice = f"job {key}: no failed SKUs; nothing to retry"
        else:
            notice = f"job {key} is not done yet; nothing to retry"
        return self._done(_job_path(account, key), notice)

    def page_cancel(self, request: Request) -> Response:
        account, key = self._form_job(request)
        outcome = job_control.cancel(self.sessions, account, key)
        self._publish(outcome.messages)
        state = "done" if outcome.done else "done once the calls in flight are recorded"
        notice = f"job {key}: {outcome.changed} SKUs cancelled; the job is {state}"
        return self._done(_job_path(account, key), notice)

    def page_redeliver(self, request: Request) -> Response:
        event_id = request.form.get("event_id", "")
        if not event_id or len(event_id) > 64 or not event_id.isprintable():
            raise BadRequest("an event's id is needed (evt_...)")
        with core_transaction(self.sessions) as connection:
            found = redeliver(connection, event_id, None)
        if not found:
            raise BadRequest(f"no event {event_id!r}")
        self._publish([deliver_message(event_id)])
        back = request.form.get("back", "/events")
        return self._done(
            back if back.startswith("/events") else "/events",
            f"event {event_id} is pending again: it goes to every target",
        )

    def page_connect(self, request: Request) -> Response:
        """Connect / Reconnect: to the seller's consent page with a fresh single-use state."""
        name = self._account(request.form.get("account"))
        if name is None:
            raise BadRequest("an account's name is needed")
        with self.sessions() as session:
            account = accounts.get_account(session, self.settings, name)
        consent = account.entry.consent_url
        if consent is None or not account.entry.authorized_by_seller:
            raise BadRequest(
                f"account {name!r} is a {account.platform} account: its sellers do not "
                "authorize the app"
            )
        state = oauth.new_state(self.sessions, name)
        url = consent(connection(self.settings, account), self._redirect_uri())
        return redirect(oauth.with_state(url, state), 303)

    def page_sync_orders(self, request: Request) -> Response:
        """Sync orders now: the message `sync-orders` sends (the task starts a run, or asks for
        one after the running one)."""
        name = self._account(request.form.get("account"))
        if name is None:
            raise BadRequest("an account's name is needed")
        with self.sessions() as session:
            running = sync_state(session, name)["running"]
        try:
            self.send(Message(SYNC_TASK, (), kwargs={"account": name}))
        except Exception as exc:
            # Nothing in the database asks for this sync: said, not left to the sweepers.
            log.warning("the broker did not take the order sync of %s", name)
            return self._error(
                request,
                503,
                f"the broker did not take the order sync ({type(exc).__name__}): nothing was "
                "started; try again once the broker answers",
            )
        if running:
            notice = f"a sync of the orders of {name} is under way: another will follow it"
        else:
            notice = f"a sync of the orders of {name} was started"
        return self._done(f"/accounts/{quote(name, safe='')}", notice)

    def page_callback(self, request: Request) -> Response:
        """The consent page's redirect: the state is consumed first, then the code exchanged,
        then a redirect so that the code leaves the address bar."""
        code = request.args.get("code", "")
        name = oauth.consume_state(self.sessions, request.args.get("state", ""))
        if name is None:
            raise BadRequest(
                "this authorization link is unknown, used or expired (it is good once, for 15 "
                "minutes): press Connect on the account's page again"
            )
        if not code or len(code) > 512 or not code.isprintable():
            raise BadRequest("the consent page gave no code: press Connect again")
        with self.sessions() as session:
            account = accounts.get_account(session, self.settings, name)
        issuer = token_issuer(self.settings, account)
        try:
            grant = issuer.create_token(code.strip())
        except ApiError as exc:
            raise BadRequest(
                f"the Open Platform refused the code: {exc}; press Connect again"
            ) from None
        finally:
            issuer.close()
        if account.seller_id and grant.seller_id and grant.seller_id != account.seller_id:
            return self._error(
                request,
                409,
                f"account {name} belongs to seller {account.seller_id}, but seller "
                f"{grant.seller_id} authorized the app: nothing was stored and the account keeps "
                "its tokens. Sign in to the consent page as the account's seller, or add "
                "another account for the other seller.",
            )
        stored = tokens.store_grant(self.sessions, self.settings, name, grant)
        log.info("account %s authorized from the console", name, extra={"account": name})
        return self._done(
            f"/accounts/{quote(name, safe='')}",
            f"account {name} is connected (seller {stored.seller_id or '?'}); "
            "its parked work resumes",
        )

    def page_static(self, request: Request, name: str) -> Response:
        response: Response = send_from_directory(STATIC, name, request.environ)
        return response

    # -- helpers -------------------------------------------------------------------------------

    def _redirect_uri(self) -> str:
        return f"{self.public_url}/oauth/callback"

    def _publish(self, messages: list[Message]) -> None:
        """What follows a commit: the messages, then the recorded events' deliveries (the
        sweepers send them if the broker is away now)."""
        for message in [*messages, *take_recorded()]:
            try:
                self.send(message)
            except Exception:
                log.warning("the broker did not take %s; the sweepers send it", message.task)


def _job_path(account: str, key: str) -> str:
    return f"/jobs/{quote(account, safe='')}/{quote(key, safe='')}"


def _send_task(message: Message) -> None:
    """Send one task over the configured broker (the Celery app is loaded on first use)."""
    from worker.celery_app import app

    app.send_task(
        message.task,
        args=list(message.args),
        kwargs=dict(message.kwargs),
        retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
    )
