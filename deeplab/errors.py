"""The one exception type a user can cause.

Scripts catch :class:`DeeplabError`, print its message as one line and exit
with status 2 (DESIGN.md, "Errors"). Anything else is a bug and keeps its
traceback.
"""

__all__ = ["DeeplabError", "USAGE_EXIT_CODE"]

#: exit status of a script when the user's input is at fault
USAGE_EXIT_CODE = 2


class DeeplabError(Exception):
    """A mistake the user can fix; the message says how."""
