"""The `lazada-worker accounts` commands: add, list, show, remove (worker.accounts.store).

Secrets are read from a file or standard input, never from an argument: arguments show in
`ps` and in shell histories.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from worker.accounts import store as accounts
from worker.accounts import tokens
from worker.accounts.platforms import lazop_client
from worker.cli.connections import load_settings, open_sessions
from worker.cli.exits import EXIT_OK
from worker.cli.output import print_json
from worker.inputs import InvalidInput
from worker.platforms import ApiError

# Options that belong to one platform only; given for the other, they are bad input.
_ONLY_FOR = {
    "sellercenter": ("user_id", "api_key_file"),
    "lazop": ("country", "app_key", "app_secret_file", "auth_url"),
}


def add_accounts_commands(sub: Any) -> None:
    """Add `accounts` and its subcommands to the CLI's subparsers."""
    commands = _Commands()
    parser = sub.add_parser("accounts", help="seller accounts", description="seller accounts")
    accounts = parser.add_subparsers(
        dest="accounts_command", required=True, metavar="ACTION", help="what to do"
    )

    # No abbreviations: `--api-key SECRET` must not be taken for `--api-key-file SECRET`.
    p = accounts.add_parser(
        "add", help="store an account (secrets from a file or -)", allow_abbrev=False
    )
    p.set_defaults(handler=commands.add)
    p.add_argument("name", metavar="NAME", help="1-64 characters of A-Z a-z 0-9 . _ @ -")
    p.add_argument(
        "--platform",
        required=True,
        choices=("sellercenter", "lazop"),
        help="sellercenter: the legacy Seller Center API; lazop: the Lazada Open Platform",
    )
    p.add_argument("--api-url", metavar="URL", help="the endpoint (lazop: instead of --country)")
    p.add_argument("--user-id", metavar="ID", help="sellercenter: the UserID that signs")
    p.add_argument("--api-key-file", metavar="PATH|-", help="sellercenter: the API key's file")
    p.add_argument("--country", metavar="CC", help="lazop: sg, my, th, vn, ph or id")
    p.add_argument("--app-key", metavar="KEY", help="lazop: the app key")
    p.add_argument("--app-secret-file", metavar="PATH|-", help="lazop: the app secret's file")
    p.add_argument("--auth-url", metavar="URL", help="lazop: where tokens are made")
    p.add_argument("--rate-limit", metavar="R", help="calls per second (LAZADA_RATE_LIMIT)")

    json_help = "print the contract's Account document(s) as JSON on standard output"
    p = accounts.add_parser("list", help="every account")
    p.set_defaults(handler=commands.list)
    p.add_argument("--json", action="store_true", help=json_help)

    p = accounts.add_parser("show", help="one account")
    p.set_defaults(handler=commands.show)
    p.add_argument("name", metavar="NAME", help="the account's name")
    p.add_argument("--json", action="store_true", help=json_help)

    p = accounts.add_parser("authorize-url", help="a lazop seller's consent page URL")
    p.set_defaults(handler=commands.authorize_url)
    p.add_argument("name", metavar="NAME", help="the lazop account's name")
    p.add_argument(
        "--redirect-uri",
        required=True,
        metavar="URL",
        help="your app's callback URL, as registered in the Open Platform console",
    )

    p = accounts.add_parser(
        "authorize", help="store a lazop account's tokens (its parked work resumes)"
    )
    p.set_defaults(handler=commands.authorize)
    p.add_argument("name", metavar="NAME", help="the lazop account's name")
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--code", metavar="CODE", help="the code the consent page gave (single use, 30 minutes)"
    )
    given.add_argument(
        "--refresh-token-file", metavar="PATH|-", help="a refresh token, from a file or -"
    )

    p = accounts.add_parser("remove", help="remove an account with no unfinished work")
    p.set_defaults(handler=commands.remove)
    p.add_argument("name", metavar="NAME", help="the account's name")


class _Commands:
    def add(self, args: argparse.Namespace) -> int:
        _refuse_other_platforms_options(args)
        if args.platform == "sellercenter":
            for option in ("api_url", "user_id", "api_key_file"):
                _require(args, option)
            api_key = _read_secret(args.api_key_file, "--api-key-file", "API key")
            settings = load_settings()
            with open_sessions(settings).begin() as session:
                account = accounts.add_sellercenter(
                    session,
                    settings,
                    args.name,
                    api_url=args.api_url,
                    user_id=args.user_id,
                    api_key=api_key,
                    rate_limit=args.rate_limit,
                )
            print(f"stored account {account.name} (sellercenter, {account.api_url})")
            return EXIT_OK
        for option in ("app_key", "app_secret_file"):
            _require(args, option)
        app_secret = _read_secret(args.app_secret_file, "--app-secret-file", "app secret")
        settings = load_settings()
        with open_sessions(settings).begin() as session:
            account = accounts.add_lazop(
                session,
                settings,
                args.name,
                app_key=args.app_key,
                app_secret=app_secret,
                country=args.country,
                api_url=args.api_url,
                auth_url=args.auth_url,
                rate_limit=args.rate_limit,
            )
        print(
            f"stored account {account.name} (lazop, {account.api_url}): it needs the seller's "
            "authorization before work is sent for it"
        )
        return EXIT_OK

    def list(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings)() as session:
            documents = [
                accounts.account_document(a) for a in accounts.list_accounts(session, settings)
            ]
        if args.json:
            print_json(documents)
        else:
            print("\n".join(_line(document) for document in documents) or "no accounts")
        return EXIT_OK

    def show(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings)() as session:
            document = accounts.account_document(accounts.get_account(session, settings, args.name))
        if args.json:
            print_json(document)
        else:
            print("\n".join(f"{key}: {_text(value)}" for key, value in document.items()))
        return EXIT_OK

    def authorize_url(self, args: argparse.Namespace) -> int:
        redirect = accounts.clean_url(args.redirect_uri, "--redirect-uri")
        account = self._lazop_account(args.name)
        consent = (account.credentials.get("auth_url") or accounts.LAZOP_AUTH_URL).removesuffix(
            "/rest"
        )
        query = {
            "response_type": "code",
            "force_auth": "true",
            "redirect_uri": redirect,
            "client_id": account.credentials["app_key"],
        }
        print(f"{consent}/oauth/authorize?{urlencode(query)}")
        return EXIT_OK

    def authorize(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        account = self._lazop_account(args.name)
        client = lazop_client(settings, account)
        try:
            if args.code is not None:
                grant = client.create_token(args.code.strip())
            else:
                secret = _read_secret(args.refresh_token_file, "--refresh-token-file", "token")
                grant = client.refresh_token(secret)
        except ApiError as exc:  # the API's words (an unknown or used code, a bad secret)
            raise InvalidInput(f"the Open Platform refused: {exc}") from None
        finally:
            client.close()
        stored = tokens.store_grant(open_sessions(settings), settings, account.name, grant)
        print(
            f"account {stored.name} authorized (seller {stored.seller_id or '?'}); access until "
            f"{_text(stored.access_expires_at)}, refresh until {_text(stored.refresh_expires_at)}"
        )
        return EXIT_OK

    def _lazop_account(self, name: str) -> Any:
        settings = load_settings()
        with open_sessions(settings)() as session:
            account = accounts.get_account(session, settings, name)
        if account.platform != "lazop":
            raise InvalidInput(f"account {name!r} is a {account.platform} account, not lazop")
        return account

    def remove(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings).begin() as session:
            accounts.remove_account(session, settings, args.name)
        print(f"removed account {args.name}")
        return EXIT_OK


def _refuse_other_platforms_options(args: argparse.Namespace) -> None:
    for platform, options in _ONLY_FOR.items():
        if platform == args.platform:
            continue
        for option in options:
            if getattr(args, option) is not None:
                raise InvalidInput(
                    f"--{option.replace('_', '-')} is for {platform} accounts, "
                    f"not --platform {args.platform}"
                )


def _require(args: argparse.Namespace, option: str) -> None:
    if getattr(args, option) is None:
        raise InvalidInput(
            f"--{option.replace('_', '-')} is required for --platform {args.platform}"
        )


def _read_secret(path: str, option: str, what: str) -> str:
    """A secret from a file, or from standard input for `-` (asked for on a terminal)."""
    if path == "-":
        text = getpass.getpass(f"{what}: ") if sys.stdin.isatty() else sys.stdin.read()
        source = "standard input"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput(f"{option} {path!r} does not exist") from None
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise InvalidInput(f"{option} {path!r} cannot be read ({reason})") from None
        source = repr(path)
    secret = text.strip()
    if not secret:
        raise InvalidInput(f"{option}: {source} is empty; it must hold the {what}")
    return secret


def _line(document: dict[str, Any]) -> str:
    source = " (environment)" if document["source"] == "environment" else ""
    return (
        f"{document['name']}  {document['platform']}  {document['state']}  "
        f"{document['api_url']}{source}"
    )


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
