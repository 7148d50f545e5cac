"""Durable jobs (OCI work requests): hydration, backup, restore, creation and deletion run here.

A job is a row in the region database. Handlers are idempotent: after a crash every ACCEPTED or IN_PROGRESS job
runs again from its start (or resumes from what it can see on disk), so a restart converges.
A handler that hits a key that is not usable (D1) parks the job and retries it later; nothing is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import Engine

from blockvault import ids
from blockvault.blockstorage.model import Job
from blockvault.clock import Clock, SystemClock
from blockvault.db import tables
from blockvault.db.repos import TableRepo
from blockvault.errors import BlockvaultError, IncorrectState, KeyUnusable

log = logging.getLogger(__name__)

ACCEPTED, IN_PROGRESS, SUCCEEDED, FAILED = "ACCEPTED", "IN_PROGRESS", "SUCCEEDED", "FAILED"
PARK_SECONDS = 2.0
# How long an idle worker waits before it looks at the job table again. Every enqueue wakes the runner at once and a
# parked job is looked at again when its PARK_SECONDS end, so this only bounds how late a job could start if a wake
# were lost. (Polling every 0.5 s cost an idle server ~0.5 % of a core and the GIL: an SQLAlchemy query per worker.)
IDLE_SECONDS = 5.0

Handler = Callable[[Job, Callable[[float], None]], None]
FailHandler = Callable[[Job, str], None]


class JobRunner:
    """Worker threads that run jobs; `wake()` after enqueueing starts work at once.

    Concurrency: a job id is claimed in memory by one worker at a time (one process per region database).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        region_key: str,
        clock: Clock,
        workers: int = 2,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.repo = TableRepo(engine, tables.jobs, Job)
        self._engine, self._region_key, self._clock, self._random = engine, region_key, clock, random
        self._handlers: dict[str, tuple[Handler, FailHandler]] = {}
        self._claimed: set[str] = set()
        self._not_before: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"jobs-{region_key}-{i}", daemon=True) for i in range(workers)
        ]
        self._idle = threading.Condition(self._lock)
        self._wall = SystemClock()

    def register(self, operation: str, handler: Handler, on_fail: FailHandler) -> None:
        self._handlers[operation] = (handler, on_fail)

    def new(
        self, operation: str, resource_id: str, compartment_id: str, payload: dict[str, object] | None = None
    ) -> Job:
        return Job(
            id=ids.new("workrequest", self._region_key, random=self._random),
            operation=operation,
            resource_id=resource_id,
            compartment_id=compartment_id,
            state=ACCEPTED,
            time_accepted=self._clock.now(),
            payload=dict(payload or {}),
        )

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def pending(self) -> list[Job]:
        return self.repo.find(tables.jobs.c.state.in_([ACCEPTED, IN_PROGRESS]), order_by=[tables.jobs.c.time_accepted])

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and shutdown: wait until no runnable job is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending():
                return True
            self._wake.set()
            time.sleep(0.05)
        return False

    def _claim(self) -> tuple[Job | None, float]:
        """A runnable job, claimed; else None and how long to wait before looking again (until the next parked
        job may run, at most IDLE_SECONDS)."""
        now = time.monotonic()
        wait = IDLE_SECONDS
        for job in self.pending():
            with self._lock:
                if job.id in self._claimed:
                    continue
                not_before = self._not_before.get(job.id, 0.0)
                if not_before > now:
                    wait = min(wait, not_before - now)
                    continue
                self._claimed.add(job.id)
            return job, 0.0
        return None, wait

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a wake() from here on ends the wait below
            job, wait = self._claim()
            if job is None:
                self._wake.wait(timeout=wait)
                continue
            try:
                self.run_one(job)
            finally:
                with self._lock:
                    self._claimed.discard(job.id)

    def run_one(self, job: Job) -> None:
        handler, on_fail = self._handlers[job.operation]
        job = replace(
            job, state=IN_PROGRESS, attempts=job.attempts + 1, time_started=job.time_started or self._clock.now()
        )
        self.repo.save(job)

        last = [0.0, time.monotonic()]

        def progress(percent: float) -> None:
            # Each save is a durable commit: report at most every tenth of the work or every half second.
            now = time.monotonic()
            if percent - last[0] >= 10.0 or now - last[1] >= 0.5:
                last[:] = [percent, now]
                self.repo.save(replace(job, percent_complete=round(percent, 1)))

        try:
            handler(job, progress)
        except (KeyUnusable, IncorrectState) as exc:
            # D1: wait for the key to come back; re-enabling restores everything with nothing lost.
            # IncorrectState: something transient (a store in use); try again shortly.
            log.info("job %s parked: %s", job.id, exc)
            with self._lock:
                self._not_before[job.id] = time.monotonic() + PARK_SECONDS
            return
        except BlockvaultError as exc:
            log.warning("job %s (%s) failed: %s", job.id, job.operation, exc)
            self._fail(job, on_fail, exc.text)
            return
        except Exception as exc:
            log.exception("job %s (%s) crashed", job.id, job.operation)
            self._fail(job, on_fail, f"internal error: {type(exc).__name__}")
            return
        done = self.repo.get(job.id)
        if done is not None:
            self.repo.save(replace(done, state=SUCCEEDED, percent_complete=100.0, time_finished=self._clock.now()))

    def _fail(self, job: Job, on_fail: FailHandler, reason: str) -> None:
        try:
            on_fail(job, reason)
        finally:
            current = self.repo.get(job.id) or job
            self.repo.save(replace(current, state=FAILED, error=reason, time_finished=self._clock.now()))
