"""Pure domain logic: no I/O, no asyncio. It decides; the adapters carry out."""
