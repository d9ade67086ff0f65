"""`lazada-worker migrate-images --wait` with a real worker: each job's state and counts, the
exit status, and the jobs that `image-jobs` and `image-job` then show."""

from __future__ import annotations

import pytest

from tests.cli.command_line import Cli, is_iso_with_offset, json_document
from tests.support.processes import WorkerProcess


@pytest.mark.slow
def test_migrate_images_wait_prints_each_jobs_state_and_counts_and_exits_1_if_images_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    urls = ["https://img.example.com/fine.jpg", "https://img.example.com/broken-link.jpg"]
    result = cli("migrate-images", *urls, "--key", "half", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stdout == "half\n"
    lines = result.stderr.splitlines()
    header = "request id\taction\tstate\timages\terrors\tpolls\terror"
    [row] = lines[lines.index(header) + 1 : lines.index(header) + 2]
    assert row.split("\t")[1:5] == ["MigrateImages", "partial", "1", "1"]
    assert "1 image job(s): 1 partial; 1 image(s) migrated, 1 error(s)" in lines


@pytest.mark.slow
def test_migrate_images_wait_then_image_jobs_lists_the_jobs_newest_first(
    cli: Cli, worker: WorkerProcess
) -> None:
    first = cli(
        "migrate-images", "https://img.example.com/a.jpg", "--key", "older", "--wait", timeout=120
    )
    assert first.returncode == 0, first.stderr
    urls = [f"https://img.example.com/{n}.jpg" for n in range(1, 10)]  # two calls: 8 + 1
    second = cli("migrate-images", *urls, "--key", "newer", "--wait", timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "newer\n"

    newer = json_document(cli("image-jobs", "--key", "newer", "--json"))
    everything = json_document(cli("image-jobs", "--json"))

    assert len(newer) == 2
    assert all(job["state"] == "succeeded" and job["request_id"] for job in newer)
    assert sorted(image["original_url"] for job in newer for image in job["images"]) == sorted(urls)
    older = json_document(cli("image-jobs", "--key", "older", "--json"))
    assert [job["request_id"] for job in everything] == [
        *(job["request_id"] for job in newer),
        older[0]["request_id"],
    ]


@pytest.mark.slow
def test_image_job_json_shows_one_job_a_migration_started(cli: Cli, worker: WorkerProcess) -> None:
    result = cli(
        "migrate-images",
        "https://img.example.com/one.jpg",
        "--key",
        "single",
        "--wait",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [listed] = json_document(cli("image-jobs", "--key", "single", "--json"))

    job = json_document(cli("image-job", listed["request_id"], "--json"))

    assert job == listed
    assert (job["action"], job["state"]) == ("MigrateImages", "succeeded")
    assert [image["original_url"] for image in job["images"]] == ["https://img.example.com/one.jpg"]
    assert job["errors"] == [] and job["polls"] >= 1
    assert is_iso_with_offset(job["created_at"]) and is_iso_with_offset(job["finished_at"])
