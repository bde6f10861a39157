"""One error type for bad input, raised before any model is loaded or any job is submitted."""


class ConfigError(ValueError):
    """A bad config value, path or file. The message names the field and what was expected."""

    def __init__(self, field: str, expected: str, got: object = None):
        self.field = field
        got_part = "" if got is None else f", got {got!r}"
        super().__init__(f"{field}: expected {expected}{got_part}")
