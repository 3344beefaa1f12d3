"""tracee."""
