"""API keys (DESIGN.md §2 "Auth"): made with ``emotion-detector keys create NAME``, shown once, stored hashed,
revocable. A key owns the videos uploaded with it."""
