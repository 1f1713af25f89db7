"""Links to Asterisk: the ARI and AMI clients and the FastAGI server."""
