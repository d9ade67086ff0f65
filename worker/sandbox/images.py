"""Image migration jobs, as both Lazada sandboxes simulate them (D5, D6; L8).

A migration call starts a job and answers its id; polls report nothing until the job's time is
up, then its images and per-image errors, fixed when the job started. Each sandbox answers them
in its own form.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from worker.sandbox.replies import Node

MAX_IMAGES_PER_CALL = 8

CDN_HOST = "img.sandbox-cdn.lazada-worker.test"
DURATION_PARAMETER = "sandbox_duration"
"""A URL query parameter that fixes the job's duration in seconds (the max over its URLs)."""
BROKEN_MARKER = "broken"
"""URLs containing this end as per-image errors."""
DOWNLOAD_ERROR = "Error download image"


@dataclass(frozen=True)
class ImageJob:
    """One migration call's job; its outcome is fixed when it starts, shown when it ends."""

    request_id: str
    urls: tuple[str, ...]
    started: float
    """time.monotonic() at submission."""
    duration: float
    images: tuple[Node, ...]
    """``{"Url", "Code", "OriginalUrl"}`` per migrated image."""
    errors: tuple[Node, ...]
    """``{"OriginalUrl", "Message"}`` per image that failed."""

    def finished(self, now: float) -> bool:
        return now - self.started >= self.duration


class ImageJobs:
    """Thread-safe store of jobs, the oldest forgotten beyond ``capacity``."""

    def __init__(self, seed: int, capacity: int = 100_000) -> None:
        self._seed = seed
        self._capacity = capacity
        self._ids = random.Random(f"lazada-sandbox-request-ids:{seed}")
        self._jobs: OrderedDict[str, ImageJob] = OrderedDict()
        self._lock = threading.Lock()

    def new_request_id(self) -> str:
        """26 lowercase hex characters, like 0a14301714908715332687334e; reproducible per seed."""
        with self._lock:
            return f"{self._ids.getrandbits(104):026x}"

    def submit(self, urls: list[str], job_seconds: tuple[float, float]) -> ImageJob:
        request_id = self.new_request_id()
        job = ImageJob(
            request_id=request_id,
            urls=tuple(urls),
            started=time.monotonic(),
            duration=self._duration(request_id, urls, job_seconds),
            images=tuple(self._image(url) for url in urls if not _broken(url)),
            errors=tuple(
                {"OriginalUrl": url, "Message": DOWNLOAD_ERROR} for url in urls if _broken(url)
            ),
        )
        with self._lock:
            self._jobs[request_id] = job
            while len(self._jobs) > self._capacity:
                self._jobs.popitem(last=False)
        return job

    def get(self, request_id: str) -> ImageJob | None:
        with self._lock:
            return self._jobs.get(request_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _duration(
        self, request_id: str, urls: list[str], job_seconds: tuple[float, float]
    ) -> float:
        asked = [seconds for url in urls if (seconds := _asked_duration(url)) is not None]
        if asked:
            return max(asked)
        low, high = job_seconds
        return random.Random(f"lazada-sandbox-image-job:{self._seed}:{request_id}").uniform(
            low, high
        )

    def _image(self, url: str) -> Node:
        code = hashlib.sha256(f"{self._seed}:{url}".encode()).hexdigest()[:32]
        return {"Url": f"https://{CDN_HOST}/p/{code}.jpg", "Code": code, "OriginalUrl": url}


def _broken(url: str) -> bool:
    return BROKEN_MARKER in url.lower()


def _asked_duration(url: str) -> float | None:
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name == DURATION_PARAMETER:
            try:
                seconds = float(value)
            except ValueError:
                return None
            return seconds if seconds >= 0 else None
    return None
