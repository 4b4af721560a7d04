"""Profiler backends behind one supervisor: py-spy runs, the native sampler (a C thread
in the process, ``ADAPROF_PROFILER=native``), or the in-process fallback.

:class:`~otel_adaprof.instrumentation.profiler.supervisor.Profiler` picks the backend,
restarts py-spy with backoff, falls back to the in-process sampler where py-spy cannot
attach, and feeds every sample to the
:class:`~otel_adaprof.instrumentation.join.samples.SampleStore`.
"""
