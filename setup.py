"""Build jrnn's native CPU kernels (``jrnn/native/*.cc``) as an optional extension.

Everything else about the package is in ``pyproject.toml``. The kernel is an XLA FFI
handler: it compiles against the FFI headers shipped in ``jaxlib`` (a build requirement)
and is loaded with ``ctypes`` at run time, not imported as a Python module. A machine
without a C++ compiler still installs jrnn (``optional=True``); the layers then use their
XLA scan (``jrnn.native.unavailable_reason()`` says why).
"""

from setuptools import Extension, setup


def _ffi_include() -> list[str]:
    import os

    import jaxlib  # build requirement (pyproject.toml [build-system])

    return [os.path.join(os.path.dirname(jaxlib.__file__), "include")]


# The kernel files, each compiled as itself (AVX-512) and through its *_avx2.cc twin.
_KERNEL_FILES = ("lstm", "gru", "simple", "conv_lstm", "dense")

setup(
    ext_modules=[
        Extension(
            "jrnn.native._kernels",
            # Each kernel file twice: for AVX-512 and (its *_avx2.cc twin) for AVX2 + FMA.
            sources=["jrnn/native/common.cc"]
            + [f"jrnn/native/{n}{isa}.cc" for n in _KERNEL_FILES for isa in ("", "_avx2")],
            depends=["jrnn/native/common.h"] + [f"jrnn/native/{n}.cc" for n in _KERNEL_FILES],
            include_dirs=_ffi_include(),
            language="c++",
            extra_compile_args=["-O3", "-std=c++17", "-Wno-attributes", "-Wno-return-type"],
            extra_link_args=["-lpthread"],
            optional=True,
        )
    ]
)
