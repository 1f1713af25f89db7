"""End-to-end tests: the sandbox Asterisk (engine.devtools.sandbox) and SIPp phones."""
