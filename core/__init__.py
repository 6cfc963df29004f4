"""Settings, database and migrations shared by every layer."""
