"""Trip planning family."""
