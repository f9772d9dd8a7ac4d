"""``python -m lrpkit.batch [attempt]``: the process that runs one cell (given as JSON on stdin).

Started by :func:`lrpkit.batch.execute.run_cell_process`; not a command for people.
"""
import sys

from .execute import child_main

sys.exit(child_main(sys.argv[1:]))
