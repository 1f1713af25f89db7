"""Everything that speaks to Asterisk: links (ARI, AMI, FastAGI) and the call flows over them."""
