"""`DataError`: a data folder or file the user must fix (empty folder, no readable image, bad partition file,
unknown dataset or split). A ``ValueError`` too, so callers that caught ``ValueError`` still do; the CLI prints
it as one ``error:`` line."""
from __future__ import annotations

from ..errors import UserError


class DataError(UserError, ValueError):
    """Bad or unusable data; the message names the file or folder and says what to do."""
