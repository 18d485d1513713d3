"""End-to-end tests: real Prometheus scraping real app servers."""
