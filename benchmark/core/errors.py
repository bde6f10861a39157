"""One error type for bad input, raised before any model is loaded or any job is submitted, and the mapping of
the environment's errors (a path that cannot be written, a full disk, not enough memory) to it."""

from __future__ import annotations

import errno


class ConfigError(ValueError):
    """A bad config value, path or file. The message names the field and what was expected."""

    def __init__(self, field: str, expected: str, got: object = None):
        self.field, self.expected, self.got = field, expected, got
        got_part = "" if got is None else f", got {got!r}"
        super().__init__(f"{field}: expected {expected}{got_part}")

    def __reduce__(self):  # pickled whole: across ranks (broadcast_object) and out of submitit jobs
        return type(self), (self.field, self.expected, self.got)


# errno -> what the file or folder should have been; these come from the user's environment, never from a bug
EXPECTED = {
    errno.EACCES: "a path this user may write (or read)",
    errno.EPERM: "a path this user may write (or read)",
    errno.EROFS: "a path on a writable file system",
    errno.ENOSPC: "enough free disk space",
    errno.EDQUOT: "enough disk quota",
    errno.ENAMETOOLONG: "a shorter path",
    errno.ENOTDIR: "a path whose parents are directories",
    errno.EISDIR: "a file path, not a directory",
    errno.EEXIST: "a path that does not exist yet",
    errno.ENOENT: "an existing path",
    errno.EIO: "a readable device (input/output error)",
    errno.ECONNREFUSED: "a server that answers",
    errno.EHOSTUNREACH: "a reachable server",
    errno.ENETUNREACH: "a reachable server",
    errno.ETIMEDOUT: "a server that answers in time",
}


def user_problem(err: BaseException) -> ConfigError | None:
    """``err`` as the user's problem it reports (a ConfigError), or None when it is a bug."""
    if isinstance(err, ConfigError):
        return err
    if isinstance(err, OSError) and err.errno in EXPECTED:
        where = err.filename if err.filename is not None else "file"
        return ConfigError(str(where), EXPECTED[err.errno], err.strerror)
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        first = str(err).splitlines()[0] if str(err) else "out of memory"
        return ConfigError("memory", "enough memory for this job (a smaller batch, resolution or model, or a "
                           "larger machine)", first[:200])
    return None
