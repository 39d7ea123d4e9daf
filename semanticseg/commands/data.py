"""Data-set commands: collect (and later build, release, validate)."""
