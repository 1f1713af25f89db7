"""End-to-end tests: the sandbox Asterisk (engine.asterisk.sandbox) and SIPp phones."""
