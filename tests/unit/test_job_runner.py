"""The job runner's worker loop: a woken runner starts a job at once, a parked job runs again when its park ends,
and an idle runner does not poll the job table (it waits for wake())."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blockvault.blockstorage import jobs
from blockvault.blockstorage.jobs import JobRunner
from blockvault.blockstorage.model import Job
from blockvault.clock import SystemClock
from blockvault.db.engine import make_engine, sqlite_url, upgrade
from blockvault.errors import KeyUnusable

COMPARTMENT = "ocid1.compartment.oc1..aaaajobs"
VOLUME = "ocid1.volume.oc1.iad.aaaajobs"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JobRunner]:
    engine = make_engine(sqlite_url(tmp_path / "meta.db"))
    upgrade(engine, "region")
    runner = JobRunner(engine, region_key="iad", clock=SystemClock())
    try:
        yield runner
    finally:
        runner.stop()
        engine.dispose()


def wait_until(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_idle_workers_wait_for_wake_and_parked_jobs_come_back_on_time(runner: JobRunner) -> None:
    ran: list[str] = []
    parked_once: set[str] = set()
    lock = threading.Lock()

    def handler(job: Job, progress: Callable[[float], None]) -> None:
        with lock:
            if job.operation == "Parks" and job.id not in parked_once:
                parked_once.add(job.id)
                raise KeyUnusable(key_id="ocid1.key.oc1..aaaa", state="DISABLED")
            ran.append(job.id)

    for operation in ("Quick", "Parks"):
        runner.register(operation, handler, lambda job, reason: None)
    looks: list[float] = []
    real = runner.pending

    def counted() -> list[Job]:
        looks.append(time.monotonic())
        return real()

    runner.pending = counted  # type: ignore[method-assign]
    runner.start()
    time.sleep(1.0)
    # One look per worker when it starts, none while idle (it was two per worker per second).
    assert len(looks) <= 2, looks

    quick = runner.new("Quick", VOLUME, COMPARTMENT)
    runner.repo.insert(quick)
    runner.wake()
    assert wait_until(lambda: quick.id in ran, jobs.IDLE_SECONDS / 2), "a woken runner did not start the job"

    parked = runner.new("Parks", VOLUME, COMPARTMENT)
    runner.repo.insert(parked)
    runner.wake()
    assert wait_until(lambda: parked.id in parked_once, jobs.IDLE_SECONDS / 2)
    # No wake from here on: the worker comes back when the park ends, well before IDLE_SECONDS.
    assert wait_until(lambda: parked.id in ran, jobs.PARK_SECONDS + 1.5), "the parked job was not run again"
    assert runner.wait_idle(timeout=10)
