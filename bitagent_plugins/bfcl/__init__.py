"""The Berkeley Function Calling Leaderboard: its data as task sources, its checker's rules as scorers."""
