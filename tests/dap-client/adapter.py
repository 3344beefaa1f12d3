"""`relive dap` as one file to run: Microsoft's DebugClient starts `RUNTIME EXECUTABLE` with
no further arguments (PYTHONPATH points at the checkout under test)."""
import sys

from relive.cli import main

sys.exit(main(["dap"]))
