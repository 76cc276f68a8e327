"""The one exception type the CLI prints as a one-line ``error: ...`` instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: a config key, a file, a flag. The message names it."""
