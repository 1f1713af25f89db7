"""Call flows over the links: the Stasis app and its event table, click-to-call, resync,
transfers, in-call controls, hangup records, IVR over ARI and over FastAGI."""
