"""Errors medguna raises on bad input: each names what is wrong and how to fix it."""


class MedgunaError(Exception):
    """Base class: a user-facing problem (bad path, bad config, bad file), not a bug."""


class ConfigError(MedgunaError):
    """A configuration value, key or combination is invalid."""


class DataError(MedgunaError):
    """A dataset folder, image, label file or split file is missing or malformed."""


class DescriptionError(MedgunaError):
    """A description source is unknown or a description file is malformed."""


class CheckpointError(MedgunaError):
    """A model checkpoint or tokenizer directory is missing, truncated or incompatible."""


class TrialError(MedgunaError):
    """A trial cannot go on (for example its loss became NaN); the message says why."""
