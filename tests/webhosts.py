"""Fixed loopback addresses for the tests' demo web servers.

Document ids hash the normalized URL, port included: a server on a random port gives every run other ids, and so
other tokenizer and validation splits. Each test module serves on its own 127.0.0.N (all of 127.0.0.0/8 is
loopback) at fixed ports, so modules never contend for an address; a busy one fails with a clear error.
"""
from __future__ import annotations

PAGES_PORT = 18765  # the site
SLOW_PORT = 18766  # the same site on a slow host

BUILD_CORPUS = "127.0.0.11"
RETRAIN = "127.0.0.12"
STACK = "127.0.0.13"
DEMO = "127.0.0.14"
BUILD_CORPUS_DUMPS = "127.0.0.15"
POLITENESS = "127.0.2.0/24"  # test_politeness: 24 origins 127.0.2.1-24 on port 18790
POLITENESS_DEAD = "127.0.3.0/24"  # test_politeness: origins where nothing listens
