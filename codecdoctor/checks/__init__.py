"""The judges, one module per scope. A check reads measurements and yields findings; no I/O."""
