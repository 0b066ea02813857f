"""Storage: the async engine (PostgreSQL or SQLite), embedded mode's SQLite driver, set-based
statements, and the group commit."""
