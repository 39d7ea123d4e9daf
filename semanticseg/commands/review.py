"""Human review commands: annotate serve | push | pull (Label Studio)."""
