"""The data-set stages, in flow order: collect, candidates, propose, adjudicate, review, instances, release (build runs them)."""
