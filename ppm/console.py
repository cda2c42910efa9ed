"""What a person sees while the demo runs: numbered stages, progress bars and tables.

Everything else (TensorFlow's C++ log lines, absl, Apache Beam, Python warnings, the INFO
records of every library and of ppm itself) goes to a log file, unless ``verbose``:

- :func:`session` sends the process's file descriptor 2 to the log file, so C++ libraries
  (TensorFlow, XLA, gRPC) and child processes (Beam's DirectRunner workers) write there, while
  ``sys.stderr`` (progress bars, tracebacks) keeps writing to the terminal;
- Python logging goes to the log file; the console shows the stage lines, warnings and errors
  of ppm and beam_jobs, and errors of any library;
- :func:`plan` fixes the list of stages up front and :func:`stage` numbers them
  ``[i/N]``, one counter for a whole run even when a stage lives in another module
  (``ppm.train`` inside ``ppm.demo``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

STAGE_LOGGER = "ppm.stages"
_OWN = ("ppm", "beam_jobs", "__main__")
_plan: list[str] | None = None


@contextlib.contextmanager
def plan(keys: Sequence[str]) -> Iterator[None]:
    """Numbers the stages ``keys`` ``[1/N]..[N/N]`` while the block runs.

    Nested plans (a CLI that is also a stage of the demo) defer to the outermost one, which must
    list their stages too.
    """
    global _plan
    if _plan is not None:
        yield
        return
    _plan = list(keys)
    try:
        yield
    finally:
        _plan = None


def stage(key: str, message: str, *args) -> None:
    """Logs the stage line ``[i/N] message`` (``message % args``) of the planned stage ``key``.

    A key outside the current plan (or no plan) is logged without a number.
    """
    prefix = f"[{_plan.index(key) + 1}/{len(_plan)}] " if _plan and key in _plan else ""
    logging.getLogger(STAGE_LOGGER).info(prefix + message, *args)


def interactive() -> bool:
    """Whether progress bars are worth drawing: ``sys.stderr`` is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _ConsoleFilter(logging.Filter):
    """Stage lines; warnings of ppm and beam_jobs; errors of anyone (everything if verbose)."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.name == STAGE_LOGGER or record.levelno >= logging.ERROR:
            return True
        own = record.name.split(".", 1)[0] in _OWN
        return own and record.levelno >= logging.WARNING


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == STAGE_LOGGER:
            return record.getMessage()
        return f"{record.levelname} {record.name}: {super().format(record)}"


def _std_stream_handlers() -> list[tuple[logging.Logger, logging.Handler]]:
    """Handlers that libraries attached to their own loggers and that print to the terminal
    (TensorFlow's ``tensorflow`` logger has one): they would bypass the log file."""
    found = []
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            for h in logger.handlers:
                if isinstance(h, logging.StreamHandler) and not isinstance(
                        h, logging.FileHandler):
                    found.append((logger, h))
    return found


@contextlib.contextmanager
def session(log_file: str, verbose: bool = False) -> Iterator[str]:
    """Routes library output to ``log_file`` (overwritten) while the block runs.

    Args:
      log_file: the log file; its folder is created.
      verbose: show everything on the console as well (file descriptor 2 is then left alone,
        so C++ log lines reach the terminal only).

    Yields:
      ``log_file``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    detached = _std_stream_handlers()
    saved_stderr = sys.stderr
    # Truncate once, then append from both sides: the handler and descriptor 2 each write at
    # the end of the file (O_APPEND) instead of over each other.
    open(log_file, "w").close()  # noqa: SIM115
    file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(_ConsoleFormatter("%(message)s"))
    console.addFilter(_ConsoleFilter(verbose))
    console_fd = None
    try:
        for logger, h in detached:
            logger.removeHandler(h)
        root.handlers = [file_handler, console]
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        if not verbose:
            sys.stderr.flush()
            console_fd = os.dup(2)
            log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            if _fileno(saved_stderr) == 2:  # a real stderr: keep it on the terminal
                sys.stderr = open(os.dup(console_fd), "w", buffering=1,  # noqa: SIM115
                                  encoding=getattr(saved_stderr, "encoding", None) or "utf-8",
                                  errors="backslashreplace")
        yield log_file
    finally:
        logging.captureWarnings(False)
        if console_fd is not None:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            if sys.stderr is not saved_stderr:
                sys.stderr.close()
                sys.stderr = saved_stderr
            os.dup2(console_fd, 2)
            os.close(console_fd)
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for logger, h in detached:
            logger.addHandler(h)
        file_handler.close()


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
