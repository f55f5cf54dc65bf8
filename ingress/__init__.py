"""How the outside world reaches a renewal: one mapping from events to workflow operations
(`operations`), served over signed HTTP (`http`) and by the CLI in starter.py."""
