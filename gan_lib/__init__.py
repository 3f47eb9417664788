"""gan_lib: a runnable reproduction of "The New Involution Operator and Its Application on GANs" (iGAN)."""
import os as _os

# With libgomp's default (active) wait policy, idle OpenMP threads spin and steal the few cores of a small
# machine from each other and from data loading: measured up to 100x slower steps when two processes share
# 2 cores. PASSIVE must be set before torch loads libgomp, so gan_lib sets it at import (override it by
# exporting OMP_WAIT_POLICY yourself).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
