"""``bioimage-async``: convert, inspect, downsample and pyramid volumes from the shell.

Exit codes: 0 success, 1 a run failed (the failed block ids and the command that finishes the run
are printed), 2 bad arguments or input, 130 interrupted, 141 (128 + SIGPIPE, as other tools
exit) when the reader of the output went away (``... | head``). Errors are one line, in the
CLI's words (options, not Python arguments); ``--debug`` shows the traceback. The library's
notices (a run's folder when it starts, a resume's missing blocks) go to stderr too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import shlex
import signal
import sys
from typing import Any

from ..errors import BioimageAsyncError, RunnerError
from ..runners.protocol import id_ranges
from .commands import COMMANDS
from .parser import EXIT_RUN_FAILED, EXIT_USAGE, build_parser
from .words import cli_words

#: Failed block ids printed in full up to this many.
SHOWN_IDS = 50
#: The exit status of a command whose output pipe was closed by its reader (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141
#: 128 + SIGTERM, as a shell reports a process that SIGTERM ended
EXIT_TERMINATED = 143


class Terminated(Exception):
    """SIGTERM ended the command (a scheduler's time limit, ``kill``, a container stop)."""


async def run_command(args: Any) -> int:
    """The command, with SIGTERM cancelling it as Ctrl-C does: its runs stop their workers,
    record the cancel and keep what they finished. Python's default for SIGTERM ended the
    process on the spot, leaving subprocess workers writing into the output unguarded."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return int(await COMMANDS[args.command](args))
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


class CliWordsFormatter(logging.Formatter):
    """The library's log lines (a cancelled run's resume hint, ...) in the CLI's words."""

    def format(self, record: logging.LogRecord) -> str:
        return "bioimage-async: " + cli_words(record.getMessage())


def rerun_hint(argv: list[str], error: RunnerError) -> str:
    kept: list[str] = []
    skip = False
    for item in argv:  # drop an earlier --resume / --block-ids: the hint sets its own
        if skip:
            skip = False
            continue
        if item in ("--resume", "--block-ids"):
            skip = True
            continue
        if item.startswith(("--resume=", "--block-ids=")):
            continue
        kept.append(item)
    if kept and kept[0] in ("attach", "status", "cancel") and error.tmp_folder:
        # these name a run, not its work: the command that started it takes --resume
        return f"finish it with the command that started the run, plus --resume {error.tmp_folder}"
    if error.tmp_folder:
        return "finish it with: bioimage-async " + shlex.join([*kept, "--resume", error.tmp_folder])
    overwrite = [] if "--overwrite" in kept else ["--overwrite"]
    if kept and kept[0] == "pyramid":  # one run per level: block ids name no pyramid's blocks
        return "re-run it with: bioimage-async " + shlex.join([*kept, *overwrite])
    ids = id_ranges(error.failed_block_ids, sep=",")  # what --block-ids takes
    return "re-run the missing blocks with: bioimage-async " + shlex.join(
        [*kept, *overwrite, "--block-ids", ids]
    )


def report_failed_run(argv: list[str], error: RunnerError) -> None:
    ids = error.failed_block_ids
    shown = ids[:SHOWN_IDS]
    more = f" ... and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    print(f"bioimage-async: {cli_words(str(error).splitlines()[0])}", file=sys.stderr)
    print(f"failed block ids: {shown}{more}", file=sys.stderr)
    print(rerun_hint(argv, error), file=sys.stderr)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fd, or no poll on this platform
        return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CliWordsFormatter())
    logger = logging.getLogger("bioimage_async")
    logger.addHandler(handler)
    # INFO: the library's notices for the user, among them the folder of a run as it starts
    # (what --resume takes after the process is killed, when nothing else can print it)
    logger.setLevel(logging.INFO)
    try:
        code = asyncio.run(run_command(args))
        sys.stdout.flush()  # a closed pipe shows here, while it can still be handled
        return code
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # another pipe (a worker's?) broke: not the reader of the output going away
        # the reader went away (``| head``): stop quietly. Python would flush stdout again at
        # exit and print an error about it, so stdout now points at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except RunnerError as error:
        if args.debug:
            raise
        report_failed_run(argv, error)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("bioimage-async: interrupted; finished blocks are written", file=sys.stderr)
        return 130
    except Terminated:
        print("bioimage-async: terminated; finished blocks are written", file=sys.stderr)
        return EXIT_TERMINATED
    except BioimageAsyncError as error:
        if args.debug:
            raise
        side = getattr(error, "cli_side", "output")
        text = str(error).strip()
        message = text.splitlines()[0] if text else type(error).__name__
        print(f"bioimage-async {args.command}: error: {cli_words(message, side)}", file=sys.stderr)
        return EXIT_USAGE
    except (PermissionError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError) as error:  # fmt: skip
        # a path the command cannot use (a read-only or missing folder, --tmp-root a file):
        # said in one line like any refusal, not as a traceback with exit 1 ('a run failed')
        if args.debug:
            raise
        where = f" {error.filename!r}" if error.filename else ""
        reason = error.strerror or type(error).__name__
        print(
            f"bioimage-async {args.command}: error: cannot use{where}: {reason} (a read-only, "
            "missing or wrong kind of path?)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as error:
        if args.debug or error.errno != errno.EROFS:
            raise
        where = f" {error.filename!r}" if error.filename else ""
        print(
            f"bioimage-async {args.command}: error: cannot write{where}: the file system is "
            "read-only; choose a writable path",
            file=sys.stderr,
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
