"""SIGTERM handled as Ctrl-C is: the trial in flight is recorded FAIL, the summary printed.

SIGTERM is what Slurm sends on preemption or at the time limit, and what `docker stop`,
systemd and Kubernetes send before SIGKILL. Python's default ends the process at once,
leaving the trial in flight RUNNING (the next run marks it FAIL, without the energy spent
since its last partial write). Here the first SIGTERM raises `Terminated` in the main
thread, a subclass of KeyboardInterrupt, so it takes Ctrl-C's path everywhere one is
handled (the runner's trial loop, the pool's wait, a worker's main) and nothing is
duplicated. The handler then puts the default back: a second SIGTERM, like SIGKILL, ends
the process at once.

A pool's workers are separate processes: `kill PID` reaches the parent only, while a
signal to the process group or the cgroup (Slurm, systemd) reaches every worker too. The
parent passes it on as `FORWARDED` (SIGUSR1), which a worker takes as its own SIGTERM
once and ignores after a first SIGTERM, so a worker that got both is not killed by the
second.

    with sigterm_as_interrupt() as term:
        ...                       # a SIGTERM raises Terminated (a KeyboardInterrupt) here
    code = term.exit_code         # 143 after a SIGTERM, else 130 (Ctrl-C)
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

#: The signal a pool's parent passes a SIGTERM on to its workers with.
FORWARDED = signal.SIGUSR1
#: Exit codes of a process ended by SIGINT / SIGTERM (128 + the signal's number).
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM: handled where Ctrl-C is (a KeyboardInterrupt)."""

    def __init__(self, name: str = "SIGTERM") -> None:
        super().__init__(name)
        self.name = name


def interrupt_reason(exc: BaseException) -> str:
    """The `fail_reason` of a trial stopped by `exc` (Ctrl-C or SIGTERM)."""
    if isinstance(exc, Terminated):
        return f"interrupted ({exc.name}: the process was asked to stop)"
    return "interrupted (Ctrl-C)"


def exit_code(exc: BaseException | None) -> int:
    """143 for a SIGTERM, 130 for Ctrl-C."""
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


class SigtermState:
    """What `sigterm_as_interrupt` saw: whether a SIGTERM (or a forwarded one) arrived."""

    def __init__(self) -> None:
        self.received: str | None = None  # the signal's name

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.received else EXIT_SIGINT


@contextlib.contextmanager
def sigterm_as_interrupt(forwarded: bool = False) -> Iterator[SigtermState]:
    """While inside, the first SIGTERM raises `Terminated` in the main thread; a second one
    ends the process at once (the default action). forwarded: also take `FORWARDED`
    (a pool worker), once, and ignore it after the first stop signal."""
    state = SigtermState()
    signals = [signal.SIGTERM] + ([FORWARDED] if forwarded else [])
    try:
        previous = {s: signal.getsignal(s) for s in signals}
    except ValueError:  # pragma: no cover - not the main thread: leave signals alone
        yield state
        return

    def handler(signum: int, _frame) -> None:
        state.received = "SIGTERM"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the next SIGTERM ends it at once
        if forwarded:
            signal.signal(FORWARDED, signal.SIG_IGN)  # the pool passing on the same stop
        raise Terminated()

    for s in signals:
        signal.signal(s, handler)
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def forward_stop(pids) -> None:
    """Pass a SIGTERM on to a pool's workers (as `FORWARDED`: see the module doc)."""
    import os

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, FORWARDED)
