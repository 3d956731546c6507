"""How ``segcli predict`` splits its work: one notion, the shard (every ``count``-th image from
``rank``, with its own journal), for both ways of splitting. Under torchrun each rank is a shard;
on one machine's CPU, ``--procs N`` forks N-1 one-thread processes beside this one (Mask R-CNN
runs faster on a CPU as N one-thread processes than as one N-thread process), each a shard with a
fresh ``ImageFinisher``. Rank 0 folds the other shards' journals into its own at the end."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from segcli.engine.core.inference import Predictor
from segcli.engine.core.interrupt import quiet_child, saving, stop_requested
from segcli.engine.predict.finisher import STAGES, ImageFinisher
from segcli.engine.predict.journal import journal_path
from segcli.errors import SegcliError


@dataclass(frozen=True)
class Shard:
    """Every ``count``-th image from the ``rank``-th: one process's share of a run."""

    rank: int = 0
    count: int = 1

    def take(self, todo: list[Path]) -> list[Path]:
        return todo[self.rank::self.count]

    def journal(self, out: Path) -> Path:
        return journal_path(out, self.rank)


MIN_IMAGES_PER_PROCESS = 16
_FORKED: tuple | None = None  # what forked prediction processes inherit (the loaded model among it)


def local_processes(requested: int, device, images: int, group) -> int:
    """How many local prediction processes to run: ``requested``, or with 0 (auto) one per CPU
    core (at most 4) on the CPU, where Mask R-CNN runs faster as N one-thread processes than as
    one N-thread process; 1 on a GPU, under torchrun, or for a handful of images."""
    if group.distributed or device.type != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if requested == 0:
        requested = min(4, os.cpu_count() or 1)
    return max(1, min(requested, images // MIN_IMAGES_PER_PROCESS))


def predict_in_processes(predictor: Predictor, finisher: ImageFinisher, todo: list[Path], root: Path,
                         processes: int, emit: Callable[..., None], start: float) -> None:
    """``processes`` shards of ``todo`` on one-thread processes: shard 0 in this one, the others
    forked, so they start at once with the model already loaded (copy-on-write). Each shard gets
    a fresh finisher (decoding on at most one worker: cheap next to a one-thread model); this
    one's lines and the others' times are folded into ``finisher``."""
    global _FORKED
    context = multiprocessing.get_context("fork")
    workers = min(finisher.options.workers, 1)
    counter = context.Value("i", 0)
    stage_totals = context.Array("d", len(STAGES) + 1)  # the others' stage seconds and images timed
    errors = context.SimpleQueue()  # a failed process's one-line reason, for this one to report
    _FORKED = (predictor, finisher, workers, todo, processes, root, counter, errors, stage_totals)
    children = [context.Process(target=_shard_process, args=(rank, os.getpid())) for rank in range(1, processes)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for child in children:
            child.start()
        own, shard = finisher.for_shard(workers), Shard(0, processes)

        def progress(done: int) -> None:
            total_done = done + counter.value
            emit("progress", done=total_done, total=len(todo), images_per_s=total_done / (time.perf_counter() - start))

        try:
            own.run(predictor, shard.take(todo), root, shard.journal(finisher.out), progress, emit)
        finally:
            finisher.absorb(own)
        told = False
        for child in children:
            while child.is_alive():
                if stop_requested() and not told:  # they stop after the image in hand, like this one
                    told = _tell(children, stop_requested())
                child.join(timeout=0.5)
                progress(own.finished)
        finisher.add_times(dict(zip(STAGES, stage_totals[:len(STAGES)])), int(stage_totals[len(STAGES)]))
        if stop_requested():
            return
        failed = [rank for rank, child in enumerate(children, start=1) if child.exitcode != 0]
        if failed:
            if not errors.empty():
                raise SegcliError(errors.get())
            raise SegcliError(f"prediction process {failed[0]} failed (exit code {children[failed[0] - 1].exitcode}); "
                              "finished images are kept: run again with --resume", finisher.out)
    finally:
        _FORKED = None
        torch.set_num_threads(threads)
        for child in children:
            if child.is_alive():  # SIGTERM: they finish the image in hand and stop
                child.terminate()
                with saving():
                    child.join()


def _tell(children: list, signum: int) -> bool:
    for child in children:
        if child.is_alive():
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass
    return True


def _die_with_parent(parent: int) -> None:
    """Linux: have this process sent SIGTERM when its parent dies (a kill -9 of the parent then
    leaves no process predicting on)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _shard_process(rank: int, parent: int) -> None:
    """A forked prediction process: the inherited model on one thread, shard ``rank`` with a
    fresh finisher (its lines reach the parent through its journal). It inherited the parent's
    signal handler: a signal makes it stop after the image in hand."""
    quiet_child()
    _die_with_parent(parent)
    predictor, finisher, workers, todo, processes, root, counter, errors, stage_totals = _FORKED
    torch.set_num_threads(1)
    mine, shard = finisher.for_shard(workers), Shard(rank, processes)

    def progress(finished: int) -> None:  # called once per image journalled
        with counter.get_lock():
            counter.value += 1

    try:
        mine.run(predictor, shard.take(todo), root, shard.journal(finisher.out), progress, lambda *a, **k: None)
        with stage_totals.get_lock():
            for k, stage in enumerate(STAGES):
                stage_totals[k] += mine.stage_seconds[stage]
            stage_totals[len(STAGES)] += mine.timed
    except SegcliError as exc:  # the parent reports it in one line (not as this process's traceback)
        errors.put(str(exc))
        raise SystemExit(2) from None
