"""The process the local FnApiRunner starts for each worker with `--workers N`: Beam's own SDK harness,
with its start-up and shutdown chatter (INFO lines, absent cloud clients, gRPC threads ending) kept off the
user's terminal. Errors still print."""

from __future__ import annotations

import logging
import os
import sys
import threading


def main() -> None:
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    logging.getLogger().addHandler(handler)  # before Beam's import, so its basicConfig adds nothing
    threading.excepthook = quiet_thread_exit
    from apache_beam.runners.worker import sdk_worker_main

    threading.Thread(target=import_the_steps, daemon=True).start()
    sdk_worker_main.main(sys.argv)
    # The runner closed the job: every output is written and renamed. Skip the interpreter's teardown
    # (gRPC threads, module finalizers: half a second the runner waits for at the end of every job).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def import_the_steps() -> None:
    """Import what the steps use (neurokit2, SciPy, pyarrow: about a second) while the harness connects
    and the runner is still on its first stages, not inside the first bundle."""
    import echopulse.batch.pipeline
    import echopulse.batch.windows_table
    import echopulse.pipeline
    import echopulse.preprocess.beats  # noqa: F401


def quiet_thread_exit(args: threading.ExceptHookArgs) -> None:
    """gRPC reader threads raise when the runner closes their channel (the end of a job, or a failed one
    the command runs again): an ending, not an error. Anything else is still reported."""
    name = type(args.exc_value).__name__
    if name in {"RpcError", "_MultiThreadedRendezvous", "_InactiveRpcError", "Empty"} or "grpc" in repr(
        type(args.exc_value)
    ):
        return
    sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)


if __name__ == "__main__":
    main()
