"""Data: the Lightning datamodules, tables (CSV, UCI) and what is found from them (supports, fiber topology)."""
