"""The base of every error a user can fix from its message alone.

The command line prints these as one line and exits with status 2; any other exception is a bug
and keeps its traceback.
"""


class DoctuneError(Exception):
    """A problem with the user's input, files or settings; the message says what to do."""
