"""The HTTP edge every service shares: errors and their answers, the API description, tokens,
rate limits, pages, and the routes every app has."""
