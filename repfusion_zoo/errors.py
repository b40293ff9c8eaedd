"""The exception types of repfusion-zoo. Every message names the thing at fault and the fix."""
from __future__ import annotations


class RepFusionError(Exception):
    """Base class of every error this package raises on purpose."""


class UnknownModelError(RepFusionError, ValueError):
    """A model name that is neither a zoo name nor a timm name."""


class PretrainedUnavailableError(RepFusionError, RuntimeError):
    """`pretrained=True` for a zoo entry whose weight is not published yet."""


class NoNetworkError(RepFusionError, ConnectionError):
    """The Hub cannot be reached and the weight is not in the local cache."""


class WeightsMismatchError(RepFusionError, RuntimeError):
    """A state dict whose keys or shapes do not match the model."""


class UnsafeWeightsError(RepFusionError, ValueError):
    """A weight file that is not safetensors (e.g. a pickle) was offered."""


class InputError(RepFusionError, ValueError):
    """An input tensor of the wrong range, channels or size."""


class ShapeMismatchError(RepFusionError, ValueError):
    """Student and teacher features that cannot be matched."""


class TeacherNotFoundError(RepFusionError, FileNotFoundError):
    """Teacher files are missing."""


class ConfigError(RepFusionError, ValueError):
    """An unknown or invalid configuration key."""


class DatasetError(RepFusionError, ValueError):
    """A dataset that is missing, empty, or malformed."""


class IncompleteCacheError(RepFusionError, FileNotFoundError):
    """A teacher-feature cache without its manifest or with missing / unfinished shards."""


class CacheMismatchError(RepFusionError, ValueError):
    """A teacher-feature cache built with other settings than the run that wants to read it."""


class DiskSpaceError(RepFusionError, OSError):
    """Not enough free disk space for what is about to be written."""


class ModelSourceNotFoundError(UnknownModelError, FileNotFoundError):
    """A model source that names a path (a folder or a weight file) that does not exist."""
