import sys

from depthlab.training import main

sys.exit(main())
