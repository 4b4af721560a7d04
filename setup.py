"""Builds the native profiler's C extension where it can: CPython 3.11 or 3.12 on Linux.

Everything else about the package is in pyproject.toml. Elsewhere, or where no C
compiler is found, the package installs without the extension (``optional=True``) and
the agent says why at start when ``ADAPROF_PROFILER=native`` asks for it
(``otel_adaprof.instrumentation.profiler.native.unavailable``).
"""

import sys

from setuptools import Extension, setup

NATIVE = "otel_adaprof.instrumentation.profiler._native_sampler"
extensions = []
if (
    sys.platform == "linux"
    and sys.implementation.name == "cpython"
    and (3, 11) <= sys.version_info[:2] <= (3, 12)
):
    extensions.append(
        Extension(
            NATIVE,
            ["otel_adaprof/instrumentation/profiler/_native_sampler.c"],
            libraries=["m", "pthread"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
