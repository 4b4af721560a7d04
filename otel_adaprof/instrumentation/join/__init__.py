"""Joining samples to spans: the sample store, the span join and the attributes it adds."""
