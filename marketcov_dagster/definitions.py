"""The marketcov code location: Definitions built from the universe config (``marketcov.yaml``)."""

import gc

from marketcov_dagster.defs.build import build_definitions
from marketcov_dagster.lib.universe import load_universe

# A location of thousands of assets allocates millions of objects that live as long as the
# process (the definitions, the jobs Dagster resolves from them, their snapshot). At CPython's
# default threshold, a collection every 700 net allocations, the cyclic collector ran about 2,800
# times while a 3,500-asset location loaded, 1.7 s of the load; every 10,000 allocations it costs
# a fifth of that, at the same peak memory (BENCHMARKS.md, section 5). Raised, never lowered.
GC_GEN0_THRESHOLD = 10_000
gc.set_threshold(max(gc.get_threshold()[0], GC_GEN0_THRESHOLD), *gc.get_threshold()[1:])

defs = build_definitions(load_universe())
