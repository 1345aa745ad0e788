"""Workers on a Dask cluster: Dask places the worker processes, the database coordinates.

    hpsearch launch studies/cifar10_cnn.toml --dask tcp://scheduler:8786 --storage postgresql://...
    hpsearch launch studies/quickstart.toml --dask local:2      # a local cluster, to try it out

One task per Dask worker runs an ordinary hpsearch worker loop (the same as `hpsearch
worker`). Workers that advertise a `GPU` resource (`dask worker ... --resources GPU=1`) get
one task per GPU, each asking for `GPU=1`; pinning the worker process to its GPU
(`CUDA_VISIBLE_DEVICES`) is the cluster's job, as dask-cuda does. If a Dask worker dies, its
trial stops beating and another worker fails and re-runs it; Dask re-submits the task.
A stop request (Ctrl-C on the launcher) reaches the tasks through the launch's row in the
database, which every worker checks while it beats.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from ..db import launches
from ..db.storage import rdb
from ..db.urls import is_sqlite, mask_url
from ..errors import HpsearchError
from ..outcomes import LaunchOutcome, WorkerStop
from .progress import watching
from .signals import stop_requests

if TYPE_CHECKING:
    from ..search.study import OpenStudy
    from .launcher import LaunchOptions
    from .worker import WorkerOptions

log = logging.getLogger("hpsearch.cluster")


def run_dask_worker(options: dict[str, Any]) -> dict[str, Any]:
    """The task each Dask worker runs (module level, so it pickles by reference)."""
    import socket

    from .worker import Worker, WorkerOptions

    report = Worker(WorkerOptions(**options)).run()
    return {
        "host": socket.gethostname(),
        "device": report.device_name,
        "stopped_because": str(report.stopped_because),
        "outcomes": {str(k): v for k, v in report.outcomes.items()},
        "last_error": report.last_error,
    }


def check_address(address: str, storage_url: str) -> None:
    """Refuse what cannot work before anything starts."""
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise HpsearchError(f"--dask: local:N needs a number of workers >= 1, got {address!r}")
        return
    if is_sqlite(storage_url):
        raise HpsearchError(
            f"--dask {address}: Dask workers on other machines cannot share the SQLite file "
            f"{mask_url(storage_url)}; use PostgreSQL or MySQL (--storage postgresql://... or mysql://...)"
        )


def _client(address: str) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HpsearchError("--dask needs the distributed package; run: pip install 'hpsearch[dask]'") from None
    if address.startswith("local:"):
        cluster = LocalCluster(
            n_workers=int(address.removeprefix("local:")), threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=logging.ERROR,
        )
        return Client(cluster)
    try:
        return Client(address, timeout=30)
    except OSError as e:
        raise HpsearchError(f"--dask {address}: cannot reach the Dask scheduler: {e}") from None


def run_on_dask(
    address: str, base: "WorkerOptions", options: "LaunchOptions", opened: "OpenStudy", progress: bool
) -> tuple[list[str], LaunchOutcome, list[str]]:
    """Run worker tasks on the cluster until they all stop; (devices, outcome, errors)."""
    check_address(address, base.storage)
    client = _client(address)
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        gpus = sum(int(w.get("resources", {}).get("GPU", 0)) for w in workers.values())
        if not workers:
            raise HpsearchError(f"--dask {address}: the cluster has no workers")
        tasks = gpus if gpus else len(workers)
        resources = {"GPU": 1} if gpus else None
        futures = [
            client.submit(
                run_dask_worker,
                asdict(replace(base, index=index, device=base.device or ("cuda" if gpus else None))),
                resources=resources,
                pure=False,
                key=f"hpsearch-worker-{opened.spec.study.name}-{base.launch_id}-{index}",
            )
            for index in range(tasks)
        ]
        outcome = LaunchOutcome.FINISHED
        engine = rdb(opened.study).engine
        with stop_requests() as received, watching(opened, progress):
            while not all(f.done() for f in futures):
                if received and outcome != LaunchOutcome.INTERRUPTED:
                    outcome = LaunchOutcome.INTERRUPTED
                    launches.request_stop(engine, base.launch_id)  # the workers see it as they beat
                if len(received) >= 2:
                    client.cancel(futures, force=True)
                    break
                time.sleep(0.2)
        devices, errors = [], []
        for index, future in enumerate(futures):
            if future.cancelled():
                errors.append(f"dask task {index} was cancelled")
                continue
            try:
                result = future.result()
            except Exception as e:  # the task's own exception, re-raised by Dask
                errors.append(f"dask task {index} failed: {type(e).__name__}: {e}")
                continue
            devices.append(f"{result['device']} on {result['host']}")
            if result["stopped_because"] == WorkerStop.FAILING:
                errors.append(f"dask task {index}: trials kept failing; the last error: {result['last_error']}")
        if errors and outcome == LaunchOutcome.FINISHED:
            outcome = LaunchOutcome.FAILED
        return devices, outcome, errors
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
