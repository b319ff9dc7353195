"""Errors a user can fix (a wrong key, a missing dataset, a bad shape).

The command line prints their message on one line, without a traceback, and exits with status 2.
"""


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and what is allowed."""
