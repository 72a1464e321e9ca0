"""The one error type for bad input.

Every loader, decoder and parser raises :class:`InputError` (or a subclass) when the *input* is wrong:
its message names the input (file, URI, port), the field or offset, and what was expected. The CLI
prints these as one line (exit status 2); anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: the message names the input, the field/offset and what was expected."""
