"""The exception types of repfusion-zoo, and how a program shows them. Every message names the thing at
fault and the fix."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Sequence

#: the flag of every program (recipes, `repfusion-zoo`) that shows the traceback of an input error
DEBUG_FLAG = "--debug"


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


class MissingExtraError(RepFusionError, ImportError):
    """A feature needs a package of an optional extra that is not installed; the message names the pip command."""

    @classmethod
    def of(cls, package: str, purpose: str, extra: str = "recipes") -> MissingExtraError:
        return cls(f"{purpose} needs the `{package}` package, part of the {extra} extra: "
                   f'pip install "repfusion-zoo[{extra}]" (or pip install {package})')


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


class TrainingDivergedError(RepFusionError, FloatingPointError):
    """A training run whose losses or a distribution's probabilities stopped being finite."""


#: what to try when a run diverges (every divergence message ends with it)
DIVERGED_FIX = ("lower --learning_rate, set --max_grad_norm (e.g. 1.0), or for the time-step policy keep "
                "--policy_baseline ema; resume from the last checkpoint with the new setting")


def run_program(prog: str, main: Callable[..., Any], argv: Sequence[str] | None = None, **kwargs: Any) -> int:
    """``main(argv, **kwargs)`` as a command: an input error (any `RepFusionError`: a config key, a
    path, a missing teacher) is shown as argparse shows a usage error, ``<prog>: error: <message>``
    on stderr and exit code 2, without a traceback unless `DEBUG_FLAG` is among the arguments (it is
    taken out of them) or ``REPFUSION_DEBUG=1``. Other exceptions propagate (a bug: the traceback
    matters). Returns the exit code (0 when `main` returns something other than an int)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("REPFUSION_DEBUG") == "1"
    try:
        result = main([a for a in args if a != DEBUG_FLAG], **kwargs)
    except RepFusionError as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error}", file=sys.stderr)
        if not debug:
            print(f"{prog}: add {DEBUG_FLAG} to see the traceback", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
