"""``python -m depthlab.batch ARGS`` = ``depthlab complete ARGS``, the target of ``accelerate launch -m``.

A launcher like ``depthlab.cli.__main__``: it hands the arguments to the CLI; the work itself is
:func:`depthlab.batch.run_batch`, which finds its share of the items from the launch.
"""

import sys

from depthlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["complete", *sys.argv[1:]]))
