"""The one exception family of the ``adain`` library; every message says what was wrong and what to do."""


class AdainError(Exception):
    """Base class for errors a user can act on."""


class WeightsError(AdainError):
    """A weights file is missing, unreadable, corrupt or does not fit the network."""


class InputError(AdainError, ValueError):
    """An image, mask or argument has the wrong shape, dtype, range or value."""


class CancelledError(AdainError):
    """The caller's ``should_stop()`` turned true while the networks ran (e.g. a cancelled backend request)."""
