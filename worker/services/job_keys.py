"""A removal job's key stands for one set of SKUs: the same set again adds nothing, another
set (a subset included) is refused and changes nothing.

Sets are compared by a digest of the sorted distinct SKUs, kept on the job row; a job
recorded before migration 0009 gets it from its SKUs when first compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from sqlalchemy import Connection, select, update

from worker.accounts.store import account_change
from worker.db.models import RemovalBatch, RemovalJob, RemovalSku, table_of
from worker.inputs import InvalidInput
from worker.settings import Settings

_jobs = table_of(RemovalJob)
_batches = table_of(RemovalBatch)
_skus = table_of(RemovalSku)


def sku_set_digest(skus: Iterable[str]) -> str:
    """sha256 of the sorted distinct SKUs as a JSON list."""
    text = json.dumps(sorted(set(skus)), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


def stored_digest(connection: Connection, job_id: int) -> str:
    """The job's digest, computed from its SKUs (and stored) when the row has none."""
    digest = connection.execute(select(_jobs.c.sku_set_digest).where(_jobs.c.id == job_id)).scalar()
    if digest is not None:
        return str(digest)
    skus = set(connection.execute(select(_skus.c.sku).where(_skus.c.job_id == job_id)).scalars())
    held = select(_batches.c.skus).where(_batches.c.job_id == job_id, _batches.c.skus.is_not(None))
    for batch in connection.execute(held).scalars():
        skus.update(json.loads(batch))
    digest = sku_set_digest(skus)
    connection.execute(update(_jobs).where(_jobs.c.id == job_id).values(sku_set_digest=digest))
    return digest


def refuse_other_set(connection: Connection, job_id: int, key: str, digest: str) -> None:
    """InvalidInput when the job recorded under `key` holds another set of SKUs."""
    if stored_digest(connection, job_id) != digest:
        raise InvalidInput(
            f"key {key!r} is already used by a removal job with another set of SKUs; "
            "send the same SKUs to see that job, or use a new key"
        )


def refuse_other_account(connection: Connection, settings: Settings, job_id: int, key: str) -> None:
    """InvalidInput when the job recorded under `key` was made for an earlier account of its
    name, removed since: it is not the account's of that name now, so it is neither reused,
    retried nor cancelled, and its SKUs are never sent with the new account's credentials."""
    job = connection.execute(
        select(_jobs.c.account, _jobs.c.account_id).where(_jobs.c.id == job_id)
    ).one()
    if account_change(connection, settings, job.account, job.account_id) is not None:
        raise InvalidInput(
            f"key {key!r} belongs to a removal job of an earlier account named "
            f"{job.account!r}, removed since (another account has the name now); "
            "use a new key for a new job"
        )


def refuse_earlier_accounts_key(
    connection: Connection, settings: Settings, account: str, key: str
) -> None:
    """`refuse_other_account` for the account's job under `key`, if there is one."""
    job_id = connection.execute(
        select(_jobs.c.id).where(_jobs.c.account == account, _jobs.c.key == key)
    ).scalar()
    if job_id is not None:
        refuse_other_account(connection, settings, job_id, key)


def check_key(
    connection: Connection, settings: Settings, account: str, key: str, skus: list[str]
) -> bool:
    """True when the account's job under `key` exists with this set (nothing to send), False
    when there is no such job; InvalidInput when it exists with another set, or was made for
    an earlier account of that name."""
    job_id = connection.execute(
        select(_jobs.c.id).where(_jobs.c.account == account, _jobs.c.key == key)
    ).scalar()
    if job_id is None:
        return False
    refuse_other_account(connection, settings, job_id, key)
    refuse_other_set(connection, job_id, key, sku_set_digest(skus))
    return True
