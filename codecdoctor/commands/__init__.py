"""One module per CLI command. Each exposes `register(app)` and stays thin: parse, call the library,
render, pick the exit code. Heavy imports (torch, scipy) happen inside the command bodies so
`codecdoctor --help` stays fast."""
