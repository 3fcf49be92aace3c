"""Batched sweeps: train several independent models (the folds of `compare`, the cells of an MNAR grid) together.

Each model trains in a worker process with `train.fit`, exactly as it would one by one: the same code, seeds and
thread count, so the weights are bit-identical to a sequential run (tests/test_sweep.py). Worker processes were
chosen over a vectorized ensemble (`torch.func.vmap` over stacked models): on this machine one vmap step of 5-20
stacked models was only 1.0-1.6x faster than the separate steps, even before the ensemble pays for exactness (every
model's dropout masks, batch order, early stopping and Adam step count replayed per model; packed GRU sequences are
data-dependent and would need a masked rewrite), while processes gave 2.4x on `compare` (benchmarks/sweep_speed.md).

Workers come from a fork server (never forked from the caller: the dashboard is multi-threaded): the server imports
the engine once per process, so a pool starts in milliseconds instead of one torch import per worker (seconds, and
tens of seconds on a loaded machine). Each worker runs one torch thread unless told. As with any
multiprocessing, a script that calls `train_many` needs an `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_sharer

import torch

from .data import Dataset, TensorData
from .threads import use_threads
from .train import History, TrainConfig, fit


@dataclass
class Job:
    """One independent training: `fit(model, train, val, config)`; the model is trained in place."""
    model: torch.nn.Module
    train: TensorData
    val: TensorData | None
    config: TrainConfig = TrainConfig()


def _forget_parents_forkserver() -> None:
    """In a process forked after a sweep ran (a test harness, a server that forks): the inherited fork server is
    the parent's child, not ours, so multiprocessing's liveness check (os.waitpid) raises ChildProcessError
    (CPython 3.11), and the fd-passing thread that sent tensors to the workers is the parent's. Forget both; this
    process starts its own when it needs them (multiprocessing does the same for the processes it starts)."""
    server = multiprocessing.forkserver._forkserver
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None
    server._lock._at_fork_reinit()
    multiprocessing.resource_sharer._resource_sharer._afterfork()


os.register_at_fork(after_in_child=_forget_parents_forkserver)


def _init_worker(threads: int) -> None:
    os.environ["MMN_THREADS"] = str(threads)     # threads.py is the one place that sets torch's thread count
    use_threads()


def _run(model, train, val, config) -> tuple[dict, History]:
    history = fit(model, train, val, config)
    return model.state_dict(), history


def default_workers(n_jobs: int) -> int:
    """One worker per core (MMN_WORKERS overrides), never more than there are jobs."""
    raw = os.environ.get("MMN_WORKERS", "")
    n = int(raw) if raw.isdigit() and int(raw) > 0 else (os.cpu_count() or 1)
    return max(1, min(n, n_jobs))


def train_many(jobs: Sequence[Job], workers: int | None = None, threads: int | None = None,
               progress: Callable[[dict], None] | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[History]:
    """Train every job's model in place, `workers` at a time; returns the histories in job order.

    Equal to `[fit(j.model, j.train, j.val, j.config) for j in jobs]`. `progress({"done", "total", "job"})` after
    each finished job; `should_stop()` is checked as jobs finish: jobs not yet started are cancelled and get an
    empty history (their models stay untrained)."""
    jobs = list(jobs)
    workers = workers or default_workers(len(jobs))
    threads = threads or torch.get_num_threads()
    histories: list[History] = [[] for _ in jobs]
    if workers == 1:          # no process to spawn: the plain sequential loop
        for i, j in enumerate(jobs):
            if should_stop is not None and should_stop():
                break
            histories[i] = fit(j.model, j.train, j.val, j.config)
            if progress is not None:
                progress({"done": i + 1, "total": len(jobs), "job": i})
        return histories
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mmn_core.sweep"])    # the server imports torch once; workers fork from it
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        pending = {pool.submit(_run, j.model, j.train, j.val, j.config): i for i, j in enumerate(jobs)}
        done = 0
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                if fut.cancelled():
                    continue
                state, histories[i] = fut.result()
                jobs[i].model.load_state_dict(state)
                jobs[i].model.eval()
                done += 1
                if progress is not None:
                    progress({"done": done, "total": len(jobs), "job": i})
            if should_stop is not None and should_stop():
                for fut in pending:
                    fut.cancel()
    return histories


def train_models(ds: Dataset, runs: Sequence[tuple[str, tuple]], model_config=None,
                 config: TrainConfig = TrainConfig(), workers: int | None = None,
                 progress: Callable[[dict], None] | None = None) -> list:
    """`[train.train_model(ds, kind, model_config, config, rows=rows) for kind, rows in runs]`, trained together.

    runs: (model kind, (train, val, test) row positions). Returns one checkpoint.Trained per run, in order."""
    from .checkpoint import Trained, build_model
    from .data import Preprocessor
    from .metrics import metric_matrix
    from .model import ModelConfig
    from .train import predict
    jobs, parts = [], []
    for kind, (tr, va, te) in runs:          # the steps of train_model before fit, in its order (same seeds)
        prep = Preprocessor.fit(ds.subset(tr))
        torch.manual_seed(config.seed)
        model = build_model(kind, ds.spec, prep, model_config or ModelConfig())
        data = prep.transform(ds)
        jobs.append(Job(model, data.subset(tr), data.subset(va), config))
        parts.append((prep, data, tr, va, te))
    histories = train_many(jobs, workers, progress=progress)
    out = []
    for job, history, (prep, data, tr, va, te) in zip(jobs, histories, parts):
        test = data.subset(te)
        matrix = metric_matrix(predict(job.model, test, semantics=config.semantics), test.y, job.model.tasks,
                               prep.target_stats)
        info = {"train_config": config.to_json(), "dataset": ds.spec.name,
                "rows": {"train": len(tr), "validation": len(va), "test": len(te)},
                "test_ids": [data.ids[i] for i in te]}
        out.append(Trained(job.model, ds.spec, prep, history, matrix, info))
    return out
