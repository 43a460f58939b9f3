"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad user input: missing or corrupt files, wrong classes, unknown keys, absent stage outputs.

    The message is one line that names the problem and the fix.
    """
