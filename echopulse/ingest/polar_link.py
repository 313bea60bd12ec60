"""A Polar H10 as an async stream of ECG blocks: the strap over Bluetooth LE (`bleak`), or its simulator.

`h10_link` scans for the strap (or goes to the address given), connects, subscribes to the PMD control point
and data characteristic, starts the ECG at 130 Hz and yields each notification's bytes; leaving it stops
the ECG and disconnects, whatever ended the stream (Ctrl-C included). `simulated_link` yields the frames
`polar_simulator` makes of a record, paced as the strap would send them. `ecg_chunks` turns either into
float32 µV blocks through `EcgFrameStream`: a refused frame or a short gap is reported (a gap is held at
the last value, so the stream keeps its clock, and never silently), a long gap ends the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np

from echopulse.errors import EchopulseError, one_line
from echopulse.ingest.polar import (
    CONTROL_STATUS,
    ECG_STOP_COMMAND,
    H10_ECG_FS,
    OP_START,
    PMD_CONTROL,
    PMD_DATA,
    PMD_SERVICE,
    EcgFrameStream,
    PmdControlError,
    PmdFrameError,
    check_control_response,
    ecg_start_command,
)
from echopulse.ingest.polar_simulator import SimulatedFrame

H10_LEAD = "I"
"""The lead slot the strap's single chest lead fills (its electrodes lie across the chest, right to left,
the direction of lead I; the bundled model reads it as the Apple Watch's lead I)."""
MAX_GAP_S = 2.0
"""A longer silence of the strap ends the stream; a shorter one is held at the last value and reported."""
SILENCE_S = 5.0
"""A connected strap that sends no frame for this long has stopped (off the skin, or its radio): the
stream ends with that reason instead of waiting for ever."""
SCAN_TIMEOUT_S = 15.0
ANSWER_TIMEOUT_S = 5.0
FRAME_QUEUE = 4096
"""Notifications waiting to be read (about 38 min at 1.8 frames/s): bounded; one that does not fit is
dropped, and shows as a gap in the stream."""

EventHandler = Callable[[str, str], None]


class PolarLinkError(EchopulseError):
    """No strap, no Bluetooth, a refused command, or a strap gone silent: one line a person can act on."""


def _bleak() -> Any:
    try:
        import bleak
    except ImportError:
        raise PolarLinkError("a Polar H10 needs the bleak package: pip install 'echopulse[polar]'") from None
    return bleak


def _is_h10(device: Any, advertisement: Any) -> bool:
    name = (getattr(advertisement, "local_name", None) or getattr(device, "name", None) or "")
    services = [s.lower() for s in getattr(advertisement, "service_uuids", None) or []]
    return name.startswith("Polar H10") or PMD_SERVICE in services


@contextlib.asynccontextmanager
async def h10_link(address: str | None = None, scan_timeout_s: float = SCAN_TIMEOUT_S,
                   on_event: EventHandler | None = None) -> AsyncIterator[AsyncIterator[bytes]]:
    """The strap's PMD data notifications, ECG started; stopped and disconnected on the way out."""
    bleak = _bleak()
    tell = on_event or (lambda kind, text: None)
    scanner = bleak.BleakScanner
    try:
        if address:
            device = await scanner.find_device_by_address(address, timeout=scan_timeout_s)
        else:
            device = await scanner.find_device_by_filter(_is_h10, timeout=scan_timeout_s)
    except Exception as error:  # no adapter, Bluetooth off, no permission: the backend's own words
        why = f"{type(error).__name__}: {one_line(error)}"
        raise PolarLinkError(f"Bluetooth is not usable here ({why}): is there an adapter, is Bluetooth on, "
                             "and on Linux is BlueZ (bluetoothd) running?") from None
    if device is None:
        where = f"at {address}" if address else "nearby"
        raise PolarLinkError(f"no Polar H10 found {where} within {scan_timeout_s:g} s: wear the strap with "
                             "moistened electrodes (it wakes on skin contact) and close the Polar app, which "
                             "holds its connection")
    frames: asyncio.Queue[bytes | None] = asyncio.Queue(FRAME_QUEUE)
    answers: asyncio.Queue[bytes] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_data(_: Any, data: bytearray) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # dropped: the decoder reports it as a gap
            frames.put_nowait(bytes(data))

    def end_of_frames() -> None:
        with contextlib.suppress(asyncio.QueueFull):
            frames.put_nowait(None)

    def on_disconnect(_: Any) -> None:
        loop.call_soon_threadsafe(end_of_frames)

    name = getattr(device, "name", None) or address or "Polar H10"
    try:
        client = bleak.BleakClient(device, disconnected_callback=on_disconnect)
        await client.connect()
    except Exception as error:
        why = f"{type(error).__name__}: {one_line(error)}"
        raise PolarLinkError(f"could not connect to {name} ({why})") from None
    try:
        try:
            await client.start_notify(PMD_CONTROL, lambda _, data: answers.put_nowait(bytes(data)))
            await client.start_notify(PMD_DATA, on_data)
            await _start_ecg(client, answers, tell)
        except (PmdControlError, PolarLinkError):
            raise
        except Exception as error:  # the backend's own errors while setting up: one line
            raise PolarLinkError(f"{name}: {type(error).__name__}: {one_line(error)}") from None
        tell("connected", f"{name}: ECG at {H10_ECG_FS} Hz")
        yield _until_disconnected(frames, name)
    finally:
        with contextlib.suppress(Exception):
            if client.is_connected:
                stop = client.write_gatt_char(PMD_CONTROL, ECG_STOP_COMMAND, response=True)
                await asyncio.wait_for(stop, 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5.0)


async def _start_ecg(client: Any, answers: asyncio.Queue[bytes], tell: EventHandler) -> None:
    """Start the ECG; a strap still streaming from an earlier session ("already in state") is stopped and
    started again."""
    for attempt in range(2):
        await client.write_gatt_char(PMD_CONTROL, ecg_start_command(), response=True)
        try:
            answer = await asyncio.wait_for(answers.get(), ANSWER_TIMEOUT_S)
        except TimeoutError:
            why = f"the strap did not answer the ECG start within {ANSWER_TIMEOUT_S:g} s"
            raise PolarLinkError(why) from None
        try:
            check_control_response(answer, OP_START)
            return
        except PmdControlError as error:
            if attempt == 0 and CONTROL_STATUS[6] in str(error):
                tell("restart", "the strap was already streaming: stopped and started again")
                await client.write_gatt_char(PMD_CONTROL, ECG_STOP_COMMAND, response=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answers.get(), ANSWER_TIMEOUT_S)
                continue
            raise


async def _until_disconnected(frames: asyncio.Queue[bytes | None], name: str) -> AsyncIterator[bytes]:
    while True:
        try:
            data = await asyncio.wait_for(frames.get(), SILENCE_S)
        except TimeoutError:
            why = f"{name} sent no ECG for {SILENCE_S:g} s: check the electrodes' contact"
            raise PolarLinkError(why) from None
        if data is None:
            raise PolarLinkError(f"{name} disconnected (out of range, or its battery?)")
        yield data


async def simulated_link(frames: Sequence[SimulatedFrame], speed: float = 1.0) -> AsyncIterator[bytes]:
    """The simulator's frames, each sent when the strap would send it (`due_s / speed` after the first)."""
    began = time.monotonic()
    for frame in frames:
        delay = began + frame.due_s / speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield frame.data


async def ecg_chunks(frames: AsyncIterator[bytes], on_event: EventHandler | None = None,
                     fs: float = H10_ECG_FS) -> AsyncIterator[np.ndarray]:
    """PMD frames → float32 µV blocks; see the module's docstring for what happens to bad frames and gaps."""
    tell = on_event or (lambda kind, text: None)
    stream = EcgFrameStream(fs)
    last = 0.0
    async for data in frames:
        try:
            block = stream.push(data)
        except PmdFrameError as error:
            tell("refused", str(error))
            continue
        samples = block.samples_uv.astype(np.float32)
        if block.gap:
            if block.gap > MAX_GAP_S * fs:
                raise PolarLinkError(f"the strap's ECG stopped for {block.gap / fs:.1f} s (more than "
                                     f"{MAX_GAP_S:g} s): check the electrodes' contact")
            tell("gap", f"{block.gap} samples ({block.gap / fs:.2f} s) lost, held at the last value")
            samples = np.concatenate([np.full(block.gap, last, dtype=np.float32), samples])
        last = float(block.samples_uv[-1])
        yield samples
