"""Data in and data out: validation, readers, the load router, streaming, writers."""
