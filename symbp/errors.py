"""One error hierarchy and one exit-status convention for everything a user can cause.

Every ``SymbpError`` carries a one-line message; the command line prints it
as ``symbp: error: ...`` and exits with the error's ``exit_status``. Nothing
here imports torch or SymPy, so catching these errors costs no import.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class SymbpError(Exception):
    """A problem the user can fix: a bad spec, option, file, word list or checkpoint."""

    exit_status = EXIT_USAGE


class UsageError(SymbpError):
    """A command line that cannot be run as given."""


class SpecError(SymbpError, ValueError):
    """A spec that cannot be derived; the message names the offending binding."""
