"""Timing every artifact (`make bench-cpu` / `make bench-gpu`): what is timed (:mod:`.targets`), loading and timing
one target in its runtime (:mod:`.runner`, with the timed calls of :mod:`.timing`), worker processes that interleave
the rounds of all targets (:mod:`.workers`), and the rows and tables of the results (:mod:`.table`)."""
