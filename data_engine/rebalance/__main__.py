import sys

from data_engine.rebalance.run import main

sys.exit(main())
