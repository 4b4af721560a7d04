"""The otel-adaprof agent: sampler, marker processor, profiler and observer."""
