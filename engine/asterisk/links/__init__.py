"""Links to Asterisk: the ARI client, event socket and event table, the AMI link and its
restart watch, the FastAGI wire format and server."""
