"""Everything that speaks to Asterisk: links (ARI, AMI, FastAGI), the ids we give what we
create in Asterisk (naming), and the call flows over them."""
