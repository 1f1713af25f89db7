"""Development tools: the sandbox Asterisk, SIPp phones and the demo.

Never imported by the daemon."""
