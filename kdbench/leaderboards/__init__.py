"""Results table → markdown leaderboards, with the papers' published numbers beside them."""
