"""Analysis over the unit store: SQL through DuckDB, the model x concept matrix, the embedding."""
