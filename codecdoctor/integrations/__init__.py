"""Optional integrations with training frameworks (imported only when used)."""
