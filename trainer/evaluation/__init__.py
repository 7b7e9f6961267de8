"""Evaluation: spatial QA scoring (`spatial_qa`), the report's benchmark metrics (`metrics`), the unified camera
move of Thinking with Novel Views (`data_engine.camera_move`), its benchmark sets (`benchmarks`) and its
planner -> editor -> reasoner loop (`novel_views`)."""
