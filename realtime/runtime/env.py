"""Process environment for the live loop, set before any heavy import.

Nothing may reach a model hub, and each component gets one thread: on two shared cores, more
threads per component made torch and BLAS 5-25x slower. Progress bars and model-loading notices
would break the one-line error contract on stderr.
"""

import os

SETTINGS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "OPENCV_LOG_LEVEL": "ERROR",
}


def apply() -> None:
    """Sets each variable unless the user already did."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)
