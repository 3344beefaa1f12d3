"""relive."""
