"""Graceful stops on Ctrl-C (SIGINT) and SIGTERM for the long jobs (``train``, ``predict``).

While a ``catch_signals()`` block is active, SIGINT or SIGTERM only records the signal; the loops
look at ``stop_requested()`` at safe points (between training steps, between images) and stop
there: train saves its position in ``last.pt``, predict finishes the images already predicted.
Then they raise ``Interrupted`` (a KeyboardInterrupt), which the CLI turns into one line and exit
code 128 + the signal number (130 for SIGINT, 143 for SIGTERM). Outside such a block nothing is
changed (SIGTERM keeps its default action).

A second signal in a single process stops at once, without saving the current position (every
file segcli writes is written atomically, so the files on disk stay whole), except while the
position is being saved (``saving()``), which is never cut short. Under torchrun repeated signals
are only noted: torchrun forwards the signal it receives to every process, and a terminal's
Ctrl-C reaches them directly too, so each process gets it twice.

Processes forked inside the block (DataLoader workers, predict's ``--procs``) inherit the handler,
so a terminal's Ctrl-C, which reaches the whole process group, does not kill them mid-write:
DataLoader workers ignore the signals (``ignore_signals``) and are shut down by their parent;
predict's processes stop at their next image like the parent.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A job stopped by a signal after leaving its files complete; ``message`` says what was kept
    and how to continue (empty on processes that do not report, e.g. torchrun ranks above 0)."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum, self.message = int(signum), message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal_name(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    def __init__(self) -> None:
        self.depth = 0
        self.signum: int | None = None
        self.escalate = True
        self.saving = 0
        self.note = ""
        self.previous: dict[int, object] = {}


_STATE = _State()


def _handle(signum: int, frame) -> None:
    state = _STATE
    if state.signum is None:
        state.signum = signum
        if state.note:
            try:
                os.write(2, f"\n{signal_name(signum)} received: {state.note}\n".encode())
            except OSError:
                pass
        return
    if state.escalate and not state.saving:
        raise KeyboardInterrupt


@contextmanager
def catch_signals(note: str = "stopping at the next safe point", escalate: bool = True) -> Iterator[None]:
    """Record SIGINT/SIGTERM instead of dying while the block runs (see the module docstring);
    the previous handlers come back afterwards. Nested blocks share the outer one's state. Off
    the main thread (where Python cannot install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _STATE
    if state.depth == 0:
        state.signum, state.saving, state.note, state.escalate = None, 0, note, escalate
        state.previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, _handle)
    else:
        state.escalate = state.escalate and escalate
    state.depth += 1
    try:
        yield
    finally:
        state.depth -= 1
        if state.depth == 0:
            for s, handler in state.previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
            state.previous = {}


@contextmanager
def interruptible(note: str, main: bool, distributed: bool, stopped_at_once: Callable[[], str]) -> Iterator[None]:
    """``catch_signals`` around a whole job (train, predict): ``note`` is printed on the first
    signal (by the main process only), and a second signal, which stops at once, becomes
    ``Interrupted`` with the message ``stopped_at_once()`` gives. Under torchrun a repeated signal
    is only noted (see the module docstring)."""
    with catch_signals(note if main else "", escalate=not distributed):
        try:
            yield
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted) or not main:
                raise
            raise Interrupted(stop_requested() or signal.SIGINT, stopped_at_once()) from None


def stop_requested() -> int | None:
    """The signal number received inside the active ``catch_signals`` block, else None."""
    return _STATE.signum


@contextmanager
def saving() -> Iterator[None]:
    """Inside: a repeated signal does not cut the work short."""
    _STATE.saving += 1
    try:
        yield
    finally:
        _STATE.saving -= 1


def quiet_child() -> None:
    """In a forked worker process that stops when its parent tells it: no message of its own,
    and a repeated signal does not cut its work short."""
    _STATE.escalate, _STATE.note = False, ""


def ignore_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT/SIGTERM to their parent, which shuts
    them down (and they exit by themselves when the parent dies)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)
