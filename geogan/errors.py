"""Error hierarchy: one root, one subclass per pipeline stage.

Every error message is one line naming the input, the problem and the fix.
Stage errors also subclass the matching builtin so callers can catch either.
Exit codes: input/usage errors -> 2, runtime failures -> 1 (see ``exit_code``).
"""


class GeoganError(Exception):
    """Root of all geogan errors."""

    exit_code = 1


class InputError(GeoganError, ValueError):
    """Bad user input (usage errors): exit code 2."""

    exit_code = 2


class SourceError(InputError):
    """A vector source cannot be read or holds nothing usable."""


class GridError(InputError):
    """Bounding box, CRS or GSD cannot make a grid."""


class RulesError(InputError):
    """The class rules file is malformed."""


class ModelError(InputError):
    """A model file/card is missing, corrupt or does not fit."""


class OutputError(InputError, OSError):
    """Output location is not writable or outputs already exist."""


class TooLargeError(InputError):
    """The requested area would take too long; pass --force to run anyway."""


class Cancelled(GeoganError):
    """The caller's cancel check asked to stop."""

    exit_code = 130


class RenderError(GeoganError, RuntimeError):
    """A runtime failure while rendering or writing."""
