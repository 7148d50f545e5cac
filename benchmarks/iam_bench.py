"""IAM benchmarks. Nothing here is a test.

    .venv/bin/python benchmarks/iam_bench.py [--requests 20000] [--sdk-seconds 10] [--threads 4]

1. Authorization cost per request with 1 000 statements in 100 compartments (goal: p99 under 1 ms): the real
   Authorizer and PolicyIndex over an in-memory directory (100 groups, users in 3 groups each, a 3-level tree of
   100 compartments, statements spread over groups, verbs, resource types and locations, a third with conditions).
   Each request is one `Authorizer.decide` for a mix of operations (GetVolume, CreateVolume, ListKeys, Encrypt,
   UpdateVolumeKmsKey) on random compartments, allowed and denied alike.
2. Signed GetVolume requests per second through the real oci SDK against `blockvault serve` (a subprocess on a
   free port, SQLite, the bootstrap admin's key): one client thread, then --threads threads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from blockvault.iam import policy
from blockvault.iam.authz import Authorizer, Directory, Request
from blockvault.iam.model import Principal

TENANCY = "ocid1.tenancy.oc1..bench"


def _directory(rng: random.Random, n_compartments: int = 100, n_statements: int = 1000) -> Directory:
    parent: dict[str, str | None] = {TENANCY: None}
    names = {TENANCY: "root"}
    comps: list[str] = []
    for i in range(n_compartments):  # 10 top level, each with 3 children, the rest one level deeper
        cid = f"ocid1.compartment.oc1..c{i:03d}"
        if i < 10:
            parent[cid] = TENANCY
        elif i < 40:
            parent[cid] = comps[i % 10]
        else:
            parent[cid] = comps[10 + i % 30]
        names[cid] = f"comp{i:03d}"
        comps.append(cid)
    tree = policy.CompartmentTree(TENANCY, parent, names)
    groups = [f"group{g:03d}" for g in range(100)]
    rtypes = ["volumes", "volume-family", "volume-backups", "keys", "key-delegate", "vaults", "boot-volumes"]
    statements: list[str] = []
    for i in range(n_statements):
        comp = rng.choice(comps)
        path = []
        cur: str | None = comp
        while cur is not None and cur != TENANCY:
            path.append(names[cur])
            cur = parent[cur]
        loc = "compartment " + ":".join(reversed(path))
        text = f"Allow group {rng.choice(groups)} to {rng.choice(policy.VERBS)} {rng.choice(rtypes)} in {loc}"
        if i % 3 == 0:
            text += f" where any {{request.operation = 'GetVolume', target.key.id = 'ocid1.key.oc1.iad.v.k{i}'}}"
        statements.append(text)
    users = {f"ocid1.user.oc1..u{u:03d}": f"user{u:03d}" for u in range(100)}
    user_groups = {uid: tuple((f"ocid1.group.oc1..{g}", g) for g in rng.sample(groups, 3)) for uid in users}
    return Directory(
        tenancy_id=TENANCY,
        tree=tree,
        policies=tuple((f"p{i}", TENANCY, tuple(statements[i * 50 : (i + 1) * 50])) for i in range(n_statements // 50)),
        user_names=users,
        user_groups=user_groups,
    )


class _Source:
    def __init__(self, directory: Directory) -> None:
        self._d = directory

    def generation(self) -> int:
        return 1

    def directory(self) -> Directory:
        return self._d


def bench_authorization(n: int) -> None:
    rng = random.Random(7)
    directory = _directory(rng)
    authz = Authorizer(_Source(directory))
    started = time.perf_counter()
    authz.decide(Principal(TENANCY, "ocid1.user.oc1..u000", ""), Request("GetVolume", TENANCY))
    compile_ms = (time.perf_counter() - started) * 1000
    comps = list(directory.tree.parent)
    users = list(directory.user_names)
    ops = ["GetVolume", "CreateVolume", "ListKeys", "Encrypt", "UpdateVolumeKmsKey"]
    samples: list[float] = []
    allowed = 0
    for i in range(n):
        principal = Principal(TENANCY, rng.choice(users), "")
        req = Request(rng.choice(ops), rng.choice(comps), f"ocid1.key.oc1.iad.v.k{i % 1000}")
        t0 = time.perf_counter_ns()
        decision = authz.decide(principal, req)
        samples.append((time.perf_counter_ns() - t0) / 1000)
        allowed += decision.allowed
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    print("authorization, 1000 statements in 100 compartments (in-process Authorizer.decide)")
    print(f"  index build (once per identity change)  {compile_ms:8.1f} ms")
    print(f"  requests {n}, allowed {allowed}, denied {n - allowed}")
    print(f"  p50 {q[49]:7.1f} us   p99 {q[98]:7.1f} us   max {samples[-1]:7.1f} us   (goal: p99 < 1000 us)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_sdk(seconds: float, threads: int) -> None:
    import oci

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKVAULT_")}
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blockvault",
                "serve",
                "--data-dir",
                str(data),
                "--port",
                str(port),
                "--nbd-port",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not (data / "blockvault.json").exists() or not _listening(port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("blockvault serve did not start")
                time.sleep(0.1)
            disc = json.loads((data / "blockvault.json").read_text())
            config = oci.config.from_file(disc["ociConfigFile"])
            endpoint = disc["regions"]["us-ashburn-1"]["endpoint"]
            bs = oci.core.BlockstorageClient(config, service_endpoint=endpoint)
            ad = disc["regions"]["us-ashburn-1"]["availabilityDomains"][0]
            vol = bs.create_volume(
                oci.core.models.CreateVolumeDetails(
                    compartment_id=disc["tenancyId"], availability_domain=ad, size_in_gbs=50
                )
            ).data
            for n_threads in (1, threads):
                counts = [0] * n_threads
                stop = time.monotonic() + seconds

                def worker(i: int, stop: float = stop, counts: list[int] = counts) -> None:
                    client = oci.core.BlockstorageClient(config, service_endpoint=endpoint)
                    while time.monotonic() < stop:
                        client.get_volume(vol.id)
                        counts[i] += 1

                workers = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                total = sum(counts)
                print(
                    f"signed GetVolume via the oci SDK, {n_threads} client thread(s): {total / seconds:8.1f} req/s "
                    f"({total} in {seconds:.0f} s)"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--sdk-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    bench_authorization(args.requests)
    bench_sdk(args.sdk_seconds, args.threads)


if __name__ == "__main__":
    main()
