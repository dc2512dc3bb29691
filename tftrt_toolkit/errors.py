"""The toolkit's own exceptions: every user mistake is one of these, never a bare ValueError.

Each message says what is wrong and what to do. The CLI prints ``str(error)`` as one
line on stderr and exits with ``error.exit_code``; library callers catch ``ToolkitError``.
"""


class ToolkitError(Exception):
    """Base class: a problem the user can fix; the message says how."""

    exit_code = 1


class ConfigError(ToolkitError):
    """A conversion or run option is invalid, or options contradict each other."""

    exit_code = 2


class ModelLoadError(ToolkitError):
    """A model spec does not name a loadable model (missing, corrupt, unsupported)."""

    exit_code = 3


class DataError(ToolkitError):
    """Input data cannot feed the model (missing, undecodable, wrong shape or dtype)."""

    exit_code = 4


class BackendUnavailable(ToolkitError):
    """The chosen backend cannot run here (e.g. TensorFlow built without TensorRT)."""

    exit_code = 5


class ConversionError(ToolkitError):
    """The backend ran but could not convert the model."""

    exit_code = 6


class OutputError(ToolkitError):
    """The output location is unusable (exists, inside the input, not writable, disk full)."""

    exit_code = 7


class ValidationFailed(ToolkitError):
    """The optimized model disagrees with the original beyond the given tolerances."""

    exit_code = 8


# An error that is none of the above (a bug, or a foreign library's unexpected error): sysexits.h's
# EX_SOFTWARE. The CLI prints one line and writes the traceback to a file (or stderr with --debug).
INTERNAL_ERROR_EXIT_CODE = 70


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``error``'s message, at most ``limit`` characters; its type name when it has none.

    The one way the toolkit quotes a foreign exception (TensorFlow's messages run to pages,
    and some exceptions carry no message at all, which must not become an IndexError).
    """
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(error).__name__
