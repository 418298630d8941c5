"""The routers of the Web API, one module per section."""
