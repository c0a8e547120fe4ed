"""omnigent-on-ray: the Omnigent Hosts and Session resources API, served by Ray."""

__version__ = "0.1.0"
