"""Errors the user can fix. The CLI prints their message as one line and exits non-zero."""


class LandscapeError(Exception):
    """Base class for user-facing errors (bad input, missing files, mismatched artifacts)."""


class DataError(LandscapeError):
    """A dataset could not be found, loaded or made."""


class CheckpointError(LandscapeError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class StoreError(LandscapeError):
    """A result file is missing, corrupt, or was made from other inputs."""


class DivergedError(LandscapeError):
    """Training produced a NaN or infinite loss."""


class WriteError(LandscapeError):
    """An output could not be written (full disk, no permission, name too long) or is being
    written by another process; the previous file, if any, is unchanged."""
