"""`make bench-peers`: our stages and trainer side by side with the systems people would use instead
(Data-Juicer, NeMo Curator, TRL, pyiqa), each peer in its own environment (scripts/setup_peer_env.sh), on the
same inputs and the same cores. Not part of `make test` or `make bench`."""
