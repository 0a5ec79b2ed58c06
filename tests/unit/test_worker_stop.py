"""How the worker's stop names its cause in the log (streams/lifecycle.py):
real signals delivered to this process, caught by the Faust worker's
handlers on its event loop, with no broker (the app is never started)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator

import faust
import pytest

from fundflow.detectors import load_config
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.worker import Worker, _worker_class

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture
def caught(
    caplog: pytest.LogCaptureFixture,
) -> Iterator[tuple[Worker, object, asyncio.AbstractEventLoop]]:
    """A Worker whose Faust worker catches the signals on its loop; this
    process's own handlers are put back afterwards."""
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    loop = asyncio.new_event_loop()
    worker = Worker(KafkaSettings(), load_config())
    # A worker that is not ready leaves with os._exit: this one has consumed.
    worker.ready = True
    app = faust.App("fundflow-stop-test", broker="kafka://127.0.0.1:1", loop=loop)
    faust_worker = _worker_class(faust)(
        app, fundflow=worker, loglevel="INFO", override_logging=False,
        redirect_stdouts=False, quiet=True, loop=loop,
    )  # fmt: skip
    faust_worker.install_signal_handlers()
    try:
        yield worker, faust_worker, loop
    finally:
        loop.close()
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _deliver(loop: asyncio.AbstractEventLoop, sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    loop.run_until_complete(asyncio.sleep(0.05))  # the loop runs the handler


def _stopped(faust_worker, loop: asyncio.AbstractEventLoop) -> None:  # type: ignore[no-untyped-def]
    loop.run_until_complete(asyncio.wait_for(faust_worker._signal_stop_future, 10))


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fundflow.worker"]


def test_sigusr1_then_the_drain_is_logged_as_sigusr1(caught, caplog) -> None:
    worker, faust_worker, loop = caught
    _deliver(loop, signal.SIGUSR1)
    assert worker.drain
    faust_worker.shutdown_soon()  # what the tick calls once every partition is consumed
    _stopped(faust_worker, loop)
    assert _lines(caplog) == [
        "signal SIGUSR1: draining: finishing once every assigned partition is consumed to its end",
        "signal SIGUSR1, input drained: final checkpoints, then stop",
    ]


def test_sigterm_is_logged_as_sigterm(caught, caplog) -> None:
    worker, faust_worker, loop = caught
    _deliver(loop, signal.SIGTERM)
    _stopped(faust_worker, loop)
    assert _lines(caplog) == ["signal SIGTERM: final checkpoints, then stop"]


def test_sigterm_during_a_drain_is_logged_as_sigterm(caught, caplog) -> None:
    worker, faust_worker, loop = caught
    _deliver(loop, signal.SIGUSR1)
    _deliver(loop, signal.SIGTERM)
    faust_worker.shutdown_soon()  # the drain finishing after the SIGTERM changes nothing
    _stopped(faust_worker, loop)
    assert _lines(caplog) == [
        "signal SIGUSR1: draining: finishing once every assigned partition is consumed to its end",
        "signal SIGTERM: final checkpoints, then stop",
    ]


def test_drain_and_exit_names_the_flag(caught, caplog) -> None:
    worker, faust_worker, loop = caught
    worker.drain, worker.drain_cause = True, "--drain-and-exit"  # as Worker(drain=True) sets them
    assert (Worker(KafkaSettings(), load_config(), drain=True).drain_cause) == "--drain-and-exit"
    faust_worker.shutdown_soon()
    _stopped(faust_worker, loop)
    assert _lines(caplog) == ["--drain-and-exit, input drained: final checkpoints, then stop"]
