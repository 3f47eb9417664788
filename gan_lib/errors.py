"""The one base class of mistakes a user can fix (bad config, bad data folder, a run folder in use, a full disk).

The CLI prints such an error as one line, ``error: <message>``, and exits with the error's ``exit_code``
(2, or 75 for a run folder locked by another process: try again later). Anything else is a bug and keeps its
traceback. Each module raises its own subclass: `gan_lib.config.ConfigError`, `gan_lib.data.DataError`,
`gan_lib.run_dir.RunDirError` (and its `RunLocked`, `RunExists`, `CheckpointError`, `DiskFull`).
"""
from __future__ import annotations

import sys
from typing import Callable

EXIT_USER_ERROR = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL of sysexits.h: the run folder is busy; the same command can be retried later


class UserError(Exception):
    """A mistake the user can fix; its message says what to do. The CLI prints it without a traceback."""

    exit_code = EXIT_USER_ERROR


def report_user_errors(run: Callable[[], int | None]) -> int:
    """``run()``'s exit code (None: 0); a user's mistake instead prints one line ``error: ...`` on stderr and
    returns its code: a `UserError` (its ``exit_code``), a path that is missing or cannot be used (2). The one
    place where `python -m gan_lib` and the scripts turn mistakes into messages; anything else is a bug and keeps
    its traceback."""
    try:
        return run() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (PermissionError, NotADirectoryError, IsADirectoryError) as e:  # a path the user chose is not usable
        print(f"error: cannot use {e.filename} ({e.strerror}): pick a path you can write, or fix its permissions",
              file=sys.stderr)
        return EXIT_USER_ERROR
