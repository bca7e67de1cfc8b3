"""Herald: a self-hosted webhook and integrations service speaking the Moltin Integrations API v2."""

__version__ = "0.1.0"
