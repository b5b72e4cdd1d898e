"""deeplab: what decides whether a deep network trains at all, one command per experiment."""

import logging

__version__ = "0.1.0"

# Inductor (the compiled step, the fused CPU kernels) logs "No CUDA runtime is found, using
# CUDA_HOME=…" at its first compile on a CPU-only machine: noise in a training console
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
