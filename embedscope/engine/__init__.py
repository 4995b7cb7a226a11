"""The engine: data intake, backend dispatch, reducers and quality metrics."""
