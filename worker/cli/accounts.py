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

from worker.accounts import store as accounts
from worker.accounts import tokens
from worker.accounts.platforms import connection, token_issuer
from worker.cli.connections import load_settings, open_sessions
from worker.cli.exits import EXIT_OK
from worker.cli.output import print_json
from worker.inputs import InvalidInput
from worker.platforms import ApiError, registry
from worker.platforms.base import Credential, PlatformEntry
from worker.services.order_sync import synced_fields
from worker.urls import mask_url


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
        choices=[entry.name for entry in registry.registered()],
        help="; ".join(f"{entry.name}: {entry.description}" for entry in registry.registered()),
    )
    p.add_argument("--api-url", metavar="URL", help="the endpoint (lazop: instead of --country)")
    # Each platform's credentials, as its registry entry names them.
    for option, (metavar, helps) in _credential_options().items():
        p.add_argument(option, metavar=metavar, help="; ".join(helps))
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
    p.add_argument(
        "--new-seller",
        action="store_true",
        help="accept tokens of another seller than the account's (the account changes seller)",
    )

    p = accounts.add_parser("remove", help="remove an account with no unfinished work")
    p.set_defaults(handler=commands.remove)
    p.add_argument("name", metavar="NAME", help="the account's name")


class _Commands:
    def add(self, args: argparse.Namespace) -> int:
        entry = registry.entry(args.platform)
        _refuse_other_platforms_options(args, entry)
        given: dict[str, str] = {}
        for credential in entry.credentials:
            value = getattr(args, _dest(credential))
            if value is None:
                if credential.required:
                    raise InvalidInput(
                        f"{credential.option} is required for --platform {entry.name}"
                    )
                continue
            if credential.secret:
                value = _read_secret(value, credential.option, credential.label)
            given[credential.name] = value
        settings = load_settings()
        with open_sessions(settings).begin() as session:
            account = accounts.add_account(
                session,
                settings,
                args.name,
                entry.name,
                given,
                api_url=args.api_url,
                rate_limit=args.rate_limit,
            )
        waits = (
            ": it needs the seller's authorization before work is sent for it"
            if entry.authorized_by_seller
            else ""
        )
        print(f"stored account {account.name} ({entry.name}, {mask_url(account.api_url)}){waits}")
        return EXIT_OK

    def list(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings)() as session:
            documents = [
                {**accounts.account_document(a), **synced_fields(session, a.name)}
                for a in accounts.list_accounts(session, settings)
            ]
        if args.json:
            print_json(documents)
        else:
            print("\n".join(_line(document) for document in documents) or "no accounts")
        return EXIT_OK

    def show(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings)() as session:
            account = accounts.get_account(session, settings, args.name)
            document = {
                **accounts.account_document(account),
                **synced_fields(session, account.name),
            }
        if args.json:
            print_json(document)
        else:
            print("\n".join(f"{key}: {_text(value)}" for key, value in document.items()))
        return EXIT_OK

    def authorize_url(self, args: argparse.Namespace) -> int:
        redirect = accounts.clean_url(args.redirect_uri, "--redirect-uri")
        settings = load_settings()
        account = _authorized_by_seller(settings, args.name)
        consent_url = account.entry.consent_url
        assert consent_url is not None  # an entry with an issuer has a consent page
        print(consent_url(connection(settings, account), redirect))
        return EXIT_OK

    def authorize(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        account = _authorized_by_seller(settings, args.name)
        issuer = token_issuer(settings, account)
        try:
            if args.code is not None:
                grant = issuer.create_token(args.code.strip())
            else:
                secret = _read_secret(args.refresh_token_file, "--refresh-token-file", "token")
                grant = issuer.refresh_token(secret)
        except ApiError as exc:  # the API's words (an unknown or used code, a bad secret)
            raise InvalidInput(f"the Open Platform refused: {exc}") from None
        finally:
            issuer.close()
        if (
            account.seller_id
            and grant.seller_id
            and grant.seller_id != account.seller_id
            and not args.new_seller
        ):
            raise InvalidInput(
                f"seller {grant.seller_id} authorized the app, but account {account.name} is "
                f"seller {account.seller_id}'s: nothing stored, its tokens kept (--new-seller "
                "stores them, and the account becomes the other seller's)"
            )
        stored = tokens.store_grant(open_sessions(settings), settings, account.name, grant)
        print(
            f"account {stored.name} authorized (seller {stored.seller_id or '?'}); access until "
            f"{_text(stored.access_expires_at)}, refresh until {_text(stored.refresh_expires_at)}"
        )
        return EXIT_OK

    def remove(self, args: argparse.Namespace) -> int:
        settings = load_settings()
        with open_sessions(settings).begin() as session:
            accounts.remove_account(session, settings, args.name)
        print(f"removed account {args.name}")
        return EXIT_OK


def _dest(credential: Credential) -> str:
    return credential.option.removeprefix("--").replace("-", "_")


def _credential_options() -> dict[str, tuple[str, list[str]]]:
    """Every platform's credential options: option -> (metavar, the help of each platform)."""
    options: dict[str, tuple[str, list[str]]] = {}
    for entry in registry.registered():
        for credential in entry.credentials:
            metavar = "PATH|-" if credential.secret else credential.metavar
            _, helps = options.setdefault(credential.option, (metavar, []))
            helps.append(f"{entry.name}: {credential.help}")
    return options


def _refuse_other_platforms_options(args: argparse.Namespace, entry: PlatformEntry) -> None:
    own = {credential.option for credential in entry.credentials}
    for other in registry.registered():
        for credential in other.credentials:
            if credential.option not in own and getattr(args, _dest(credential)) is not None:
                raise InvalidInput(
                    f"{credential.option} is for {other.name} accounts, not --platform {entry.name}"
                )


def _authorized_by_seller(settings: Any, name: str) -> accounts.Account:
    with open_sessions(settings)() as session:
        account = accounts.get_account(session, settings, name)
    if not account.entry.authorized_by_seller:
        raise InvalidInput(
            f"account {name!r} is a {account.platform} account: its sellers do not authorize "
            "the app (only Open Platform accounts are authorized)"
        )
    return account


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
