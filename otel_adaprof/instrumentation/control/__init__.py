"""Control: the poller that reports windows and the live params it applies."""
