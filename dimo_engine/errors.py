"""The one exception type for bad input a person can fix.

Raised anywhere in the engine with one sentence that names the input and the fix; the CLI
prints it and exits with code 2, the HTTP service answers it with a 4xx status.
"""


class InputError(ValueError):
    """A bad input (file, camera, video, setting) described in one sentence for a person."""
