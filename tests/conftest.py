"""Settings for the whole suite: tests start their own Ray and must not reach the network."""

import os

# Ray reports usage statistics over the network by default; the studies turn it off the same way.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
