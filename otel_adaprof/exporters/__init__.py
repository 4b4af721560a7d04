"""Exporters of profiles: speedscope JSON, collapsed stacks, pprof and OTLP."""
