"""Taxonomy rebalancing (report 4.1.3): Caption -> Embedding -> Tag -> Retrieval -> Rebalance."""
