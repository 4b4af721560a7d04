"""Span side of the agent: which spans are kept, and which become markers."""
