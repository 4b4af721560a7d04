"""The profiler CPU budget the demo and the benchmark give their adaptive sessions.

Its own module so that ``adaprof demo`` can show it as a default without importing the
demo's service modules (they read ``--shape`` when first imported).

    >>> BUDGET_CPU
    0.016
"""

from __future__ import annotations

#: Profiler CPU budget of the heuristic and adaptive sessions (fraction of a core, held
#: on average over the goal's horizon): 0.016, 0.45x what static-100 costs on this
#: service (0.036 of a core, all agent threads and py-spy in cpu mode: the mean of its
#: four phases in bench/output/bench_s17_seed1.json), i.e. what a user asking for "at
#: most half of continuous profiling" sets. (It was 0.15 while py-spy ran in wall mode
#: at about 0.33 of a core; with cpu mode that left adaptive four times static-100's
#: cost to spend, and no reason to spend less.)
BUDGET_CPU = 0.016
