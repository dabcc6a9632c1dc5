"""``python -m depthlab.training --config X [overrides]`` (what ``accelerate launch -m`` runs).

An entry point like the console script: it sits above every layer and only calls the CLI.
"""

import sys

from depthlab.cli.train_cmd import main

sys.exit(main())
