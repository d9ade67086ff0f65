"""`lazada-worker remove-products`: where the SKUs come from (arguments, a file, standard
input), the key it prints, and with --wait (a real worker) the job's outcome and exit status."""

from __future__ import annotations

import pytest

from tests.cli.command_line import Cli, assert_bad_input, is_iso_with_offset, json_document
from tests.support.processes import WorkerProcess

REMOVAL_SKU_KEYS = {"sku", "state", "attempts", "error_code", "message"}


def test_remove_products_enqueues_the_argument_skus_and_prints_the_generated_key(
    cli: Cli,
) -> None:
    result = cli("remove-products", "A-1", " A-2 ", "A-1")

    assert result.returncode == 0, result.stderr
    [(task, args, kwargs, task_id)] = cli.enqueued()
    assert (task, args) == ("lazada.remove_products", [["A-1", "A-2"]])
    assert result.stdout == f"{task_id}\n"  # no key given: the task id is the key
    assert kwargs.get("key") in (None, task_id)


def test_remove_products_prints_the_given_key(cli: Cli) -> None:
    result = cli("remove-products", "A-1", "--key", "clearance-2024")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "clearance-2024\n"
    [(_task, _args, kwargs, _task_id)] = cli.enqueued()
    assert kwargs["key"] == "clearance-2024"


def test_remove_products_reads_a_file_ignoring_blank_lines_and_duplicates(cli: Cli) -> None:
    sku_file = cli.folder / "skus.txt"
    sku_file.write_text("B-1\n\n   \nB-2\r\nA-1\nB-1\n\n")

    result = cli("remove-products", "A-1", "--file", str(sku_file), "--key", "from-file")

    assert result.returncode == 0, result.stderr
    [(_task, args, _kwargs, _task_id)] = cli.enqueued()
    assert args == [["A-1", "B-1", "B-2"]]


def test_remove_products_reads_standard_input_with_file_dash(cli: Cli) -> None:
    result = cli("remove-products", "--file", "-", "--key", "from-stdin", stdin="S-1\n\nS-2\nS-1\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "from-stdin\n"
    [(_task, args, _kwargs, _task_id)] = cli.enqueued()
    assert args == [["S-1", "S-2"]]


def test_remove_products_with_only_blank_lines_on_standard_input_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products", "--file", "-", stdin="\n  \n\n"))
    assert "no SKUs" in line


@pytest.mark.slow
def test_remove_products_wait_returns_a_done_job_that_status_json_shows(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli(
        "remove-products", "R-1", "R-2", "R-3", "R-2", "--key", "cli-job", "--wait", timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "cli-job\n"
    job = json_document(cli("status", "cli-job", "--json"))
    assert job["key"] == "cli-job"
    assert (job["state"], job["total"], job["removed"], job["failed"]) == ("done", 3, 3, 0)
    assert is_iso_with_offset(job["created_at"]) and is_iso_with_offset(job["finished_at"])
    assert [s["sku"] for s in job["skus"]] == ["R-1", "R-2", "R-3"]
    for sku in job["skus"]:
        assert set(sku) >= REMOVAL_SKU_KEYS
        assert (sku["state"], sku["error_code"]) == ("removed", None)
        assert sku["attempts"] >= 1


@pytest.mark.slow
def test_a_sku_the_api_refuses_fails_with_503_and_remove_products_wait_exits_1(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli(
        "remove-products", "OK-1", "X-FAIL-1", "--key", "with-failure", "--wait", timeout=120
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout == "with-failure\n"
    job = json_document(cli("status", "with-failure", "--json"))
    assert (job["state"], job["removed"], job["failed"]) == ("done", 1, 1)
    skus = {s["sku"]: s for s in job["skus"]}
    assert skus["OK-1"]["state"] == "removed"
    assert (skus["X-FAIL-1"]["state"], skus["X-FAIL-1"]["error_code"]) == ("failed", "E503")
    assert skus["X-FAIL-1"]["message"]


@pytest.mark.slow
def test_remove_products_wait_off_a_terminal_shows_progress_lines_and_why_skus_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    skus = ["OK-1", "X-FAIL-1", "OK-2", "Y-FAIL-2"]
    result = cli("remove-products", *skus, "--key", "told", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stdout == "told\n"  # standard output keeps the key alone
    lines = result.stderr.splitlines()
    progress = [line for line in lines if line.startswith("removing 4 SKUs: ")]
    # Lines counting up to the end (how far the worker got by the first look depends on the
    # machine; the line every few seconds is test_wait_off_a_terminal_prints_a_progress_...).
    counts = [int(line.split(": ")[1].split("/")[0]) for line in progress]
    assert progress and counts == sorted(counts)
    assert progress[-1].startswith("removing 4 SKUs: 4/4 (100%)")
    assert "removed 2, failed 2 of 4" in lines
    assert "  2 failed: E503 SellerSku '…' could not be removed" in lines, lines
