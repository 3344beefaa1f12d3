"""tracefile."""
