"""Generated requests against a live server: schemathesis, on both database backends."""
