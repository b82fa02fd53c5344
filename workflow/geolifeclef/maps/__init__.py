"""Species maps: models that predict at any point, rendering, the report, point queries."""
