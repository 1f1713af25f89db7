"""Call flows over the links: click-to-call, resync, transfers, in-call controls, IVR."""
