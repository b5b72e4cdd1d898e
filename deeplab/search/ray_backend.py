"""Probes on a Ray cluster (``scripts/search.py --backend ray``; ``pip install "deeplab[ray]"``).

Each probe is one Ray task running :func:`deeplab.search.runner.run_probe` —
the function the local backend runs — with one GPU when the cluster has GPUs
(and the run may use them), else one CPU and one torch thread. Records come
back to the search's process, which alone writes the ledger, so the ledger
stays the single source of truth: a search can start on one backend and
resume on the other.

Each node must be able to ``import deeplab`` (the same install) and read
``--data-dir`` and write ``--out`` at the same paths (a shared filesystem), as
the probes' TensorBoard runs and checkpoints are written there.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from deeplab.errors import DeeplabError

__all__ = ["RayRunner", "BACKENDS"]

BACKENDS = ("local", "ray")


def _probe_with_threads(probe: Callable[[Any], dict[str, Any]], request: Any, threads: int) -> dict[str, Any]:
    """On the worker: a probe at ``threads`` torch threads (Ray sets none; two probes on one node's cores
    at torch's default would each take every core)."""
    import torch

    torch.set_num_threads(threads)
    return probe(request)


class RayRunner:
    """Trains probes as Ray tasks; ``address`` None starts (or joins) a local Ray instance.

    ``probe``: the function each task runs (the search passes :func:`~deeplab.search.runner.run_probe`;
    tests a synthetic one).
    """

    def __init__(self, probe: Callable[[Any], dict[str, Any]], address: str | None = None, use_gpus: bool = True,
                 init_kwargs: dict[str, Any] | None = None):
        try:
            import ray
        except ImportError:
            raise DeeplabError('--backend ray needs Ray: pip install "deeplab[ray]" (or pip install ray)') from None

        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         **(init_kwargs or {}))
            except (ConnectionError, ValueError, RuntimeError) as error:
                where = address or "a local instance"
                raise DeeplabError(f"--backend ray could not reach Ray at {where} ({error}); start it with "
                                   f"`ray start --head` or check --ray-address") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if use_gpus else 0
        self.cpus = int(resources.get("CPU", 0))
        options = {"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": 1}
        self._task = ray.remote(**options)(_probe_with_threads)
        self._probe = probe
        self._pending: list[Any] = []

    def describe(self) -> str:
        if self.gpus:
            return f"Ray: {self.gpus} GPU(s) in the cluster, one per probe"
        return f"Ray: {self.cpus} CPU(s) in the cluster, one per probe (1 thread)"

    def __call__(self, requests: Sequence[Any]) -> Iterator[dict[str, Any]]:
        """Submit every probe now (they start at once); the records come back as they finish."""
        self._pending = [self._task.remote(self._probe, request, 1) for request in requests]
        return self._results()

    def _results(self) -> Iterator[dict[str, Any]]:
        ray = self._ray
        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            yield ray.get(done[0])  # a failed probe raises here, as it does in a local worker

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._pending:  # a failed or interrupted search must not leave probes training
                self._ray.cancel(ref, force=True)
        self._pending = []
        if self._started_here:
            self._ray.shutdown()
