"""The otel-adaprof controller: an aiohttp service that agents poll and clients drive."""
