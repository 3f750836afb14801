"""cf stage."""
