"""The core every stage imports: findings and reports, the check registry, errors, atomic I/O, version."""
