"""Export of the agent's samples in other signals than spans (OTLP profiles)."""
