"""Use cases the API and the CLI call: plain inputs in, ports out to Asterisk and the store."""
