"""Ctrl-C in the middle of `echopulse stream`, for tests: SIGINT raised once the first ack is in."""

from __future__ import annotations

import signal


def interrupt_on_first_ack(monkeypatch) -> None:
    """Make the command's clip sink raise SIGINT when the server acknowledges the first samples, as a person
    pressing Ctrl-C once the stream is under way."""
    from echopulse.cli.stream import ClipSink

    original = ClipSink.on_message

    def on_message(self, message, payload) -> None:
        original(self, message, payload)
        if message.type == "ack" and not getattr(self, "interrupted", False):
            self.interrupted = True
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(ClipSink, "on_message", on_message)
