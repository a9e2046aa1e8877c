"""A compute worker process: ``python -m bioimage_async.pipeline.compute_worker``.

Talks to its ComputePool over stdin/stdout with length-prefixed pickle frames. The first frame is
the cloudpickled (kernel, grid, output dtype, casting), answered (True, None, 0) once it is
loaded (or (False, traceback, 0) when it cannot be); every further frame is (block_id, data,
mask) and gets a reply (ok, result-or-traceback, seconds). The protocol gets a private copy of
the stdout file descriptor and fd 1 is pointed at stderr, so a user function that prints cannot
corrupt it.
Importing this module loads numpy and cloudpickle only: startup stays lean.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
import time
import traceback
from typing import IO, Any

HEADER = struct.Struct("<QQ")  # pickle length, number of out-of-band buffers
LENGTH = struct.Struct("<Q")


def read_frame(stream: IO[bytes]) -> Any:
    """One message: a pickle plus its out-of-band buffers (arrays travel without a copy)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    size, count = HEADER.unpack(header)
    payload = stream.read(size)
    buffers = []
    for _ in range(count):
        (length,) = LENGTH.unpack(stream.read(LENGTH.size))
        buffers.append(bytearray(stream.read(length)))
    return pickle.loads(payload, buffers=buffers)


def write_frame(stream: IO[bytes], obj: Any) -> None:
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    stream.write(HEADER.pack(len(payload), len(buffers)))
    stream.write(payload)
    for buffer in buffers:
        raw = buffer.raw()
        stream.write(LENGTH.pack(raw.nbytes))
        stream.write(raw)
    stream.flush()


def die_with_parent() -> None:
    """Exit as soon as the parent process is gone, even in the middle of a block.

    Linux's parent-death signal kills us when the parent dies (also by SIGKILL); elsewhere, and
    as a second guard, a daemon thread sees the parent pid change (we were re-parented) within
    a second. Without this, a killed script leaves its workers computing until their block
    returns (an hour for an hour-long block).
    """
    # the pool's pid, passed in: a parent killed while this process was still importing has
    # already re-parented it, and os.getppid() here would name the new parent
    parent = int(os.environ.get("BIOIMAGE_ASYNC_POOL_PID") or os.getppid())
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig, sigkill = 1, 9
        libc.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    die_with_parent()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    protocol_in = sys.stdin.buffer

    from .compute_pool import compute_block

    try:
        setup = read_frame(protocol_in)  # cloudpickle output; plain pickle.loads reads it
        if setup is None:
            return
        kernel, grid, out_dtype, casting = setup
    except Exception:  # noqa: BLE001 - e.g. the function's module cannot be imported here
        write_frame(protocol_out, (False, traceback.format_exc(), 0.0))
        return
    write_frame(protocol_out, (True, None, 0.0))  # ready: the pool counts no start-up as compute
    while True:
        request = read_frame(protocol_in)
        if request is None:
            return
        block_id, data, mask = request
        started = time.perf_counter()
        reply: tuple[bool, Any, float]
        try:
            block = grid.block(block_id)
            result = compute_block(kernel, block, data, out_dtype, casting, mask)
        except Exception:  # noqa: BLE001 - reported to the parent as this block's failure
            reply = (False, traceback.format_exc(), 0.0)
        except SystemExit as error:  # sys.exit() in the function: its block fails, not this
            # process (the parent read a dead worker as an OOM kill, the exit nowhere)
            reply = (
                False,
                f"{traceback.format_exc()}\nthe function raised {error!r} (sys.exit() in it or "
                "in a library it calls): the block counts as failed, the others go on",
                0.0,
            )
        else:
            reply = (True, result, time.perf_counter() - started)
        try:
            write_frame(protocol_out, reply)
        except (BrokenPipeError, ConnectionResetError):
            os._exit(0)  # the parent is gone: nothing to report to, and no traceback to print


if __name__ == "__main__":
    main()
