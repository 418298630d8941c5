"""A graceful stop that does not wait for answers that only end with their job.

On SIGTERM or SIGINT uvicorn stops accepting connections and waits for every open request
before the app's lifespan (which stops the engine) runs; a live-progress stream would hold
it for as long as its job runs. `GracefulServer` sets the app's `stopping` event the moment
the signal arrives, and such streams send their end event and close on it.
"""

from __future__ import annotations

import threading
from types import FrameType

import uvicorn
from starlette.applications import Starlette


def stopping_event(app: Starlette) -> threading.Event:
    """The event set when the server begins to stop (made with the app, or on first use)."""
    event: threading.Event | None = getattr(app.state, "stopping", None)
    if event is None:
        event = threading.Event()
        app.state.stopping = event
    return event


class GracefulServer(uvicorn.Server):
    """A uvicorn server that tells its app when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stopping.set()
        super().handle_exit(sig, frame)
