"""The carriers: one module per carrier behind one Protocol (:mod:`engine.providers.base`),
their signatures (:mod:`engine.providers.signatures`) and the one table of their errors."""
