"""Build and load the C++ involution primitives (``involution_native.cpp``) for the CPU.

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (gcc/clang and ninja; about a
minute, once: the build is cached in ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``). The build is
named (`extension_name`) by the CPU's vector capability (AVX2 / AVX512 / DEFAULT), compiled for that capability
only, so a cache shared between machines never hands an AVX-512 build to an AVX2 CPU, and by a hash of the C++
source, so a changed source is a new build in a new file: it never reuses a stale build, and never overwrites the
``.so`` that a process started before the change still has mapped (long training runs). ``load()`` returns None
(and the involution falls back to its eager backend, with one warning) when no compiler is available or the build
fails.
"""
from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path

_state: dict = {}

ARCH_FLAGS = {
    "AVX2": ["-mavx2", "-mfma"],
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"],
}


def capability() -> str:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - older torch
        return "DEFAULT"


SOURCE = Path(__file__).with_name("involution_native.cpp")


def extension_name(source: str, cap: str) -> str:
    """The build's name for the C++ ``source`` text compiled for capability ``cap``:
    ``gan_lib_involution_<cap>_<first 12 hex digits of the source's SHA-256>``."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return f"gan_lib_involution_{cap.lower()}_{digest}"


def _cpp_extension():
    """``torch.utils.cpp_extension``, imported without the warning it logs on import when a CUDA toolkit is
    installed but no GPU is visible ("No CUDA runtime is found"): true there, irrelevant to these CPU kernels,
    and noise in every run's output."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        log.setLevel(level)
    return cpp_extension


def _is_built(name: str) -> bool:
    try:
        return (Path(_cpp_extension()._get_build_directory(name, False)) / f"{name}.so").exists()
    except Exception:
        return False


def load(verbose: bool = False):
    """The compiled module (functions ``forward``, ``transpose``, ``correlate``; float32, float64 and bfloat16
    tensors), or None when it cannot be built."""
    if "module" in _state:
        return _state["module"]
    _state["module"] = None
    try:
        load_extension = _cpp_extension().load

        cap = capability()
        name = extension_name(SOURCE.read_text(), cap)
        if not _is_built(name):
            print(f"gan_lib: building the C++ involution kernels for {cap} (once, about a minute; cached)...",
                  flush=True)
        _state["module"] = load_extension(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-fopenmp", *ARCH_FLAGS.get(cap, [])],
            extra_ldflags=["-fopenmp"],
            verbose=verbose,
        )
    except Exception as e:  # no compiler, no ninja, a failed build: the eager backend still works
        _state["error"] = f"{type(e).__name__}: {e}"
        warnings.warn("gan_lib: the C++ involution kernels could not be built, using the eager backend "
                      f"(slower; set GAN_LIB_INVOLUTION=eager to silence this): {_state['error'][:500]}")
    return _state["module"]
