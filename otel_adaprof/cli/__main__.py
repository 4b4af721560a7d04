"""``python -m otel_adaprof.cli`` runs the ``adaprof`` command."""

from otel_adaprof.cli import main

main()
