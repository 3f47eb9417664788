"""The one base class of mistakes a user can fix (bad config, bad data folder, a run folder in use, a full disk).

The CLI prints such an error as one line, ``error: <message>``, and exits with the error's ``exit_code``
(2, or 75 for a run folder locked by another process: try again later). Anything else is a bug and keeps its
traceback. Each module raises its own subclass: `gan_lib.config.ConfigError`, `gan_lib.data.DataError`,
`gan_lib.run_dir.RunDirError` (and its `RunLocked`, `RunExists`, `CheckpointError`, `DiskFull`).
"""
from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL of sysexits.h: the run folder is busy; the same command can be retried later


class UserError(Exception):
    """A mistake the user can fix; its message says what to do. The CLI prints it without a traceback."""

    exit_code = EXIT_USER_ERROR
