"""bitagent: evaluate tool-calling LLMs the way Bittensor Subnet 20 does."""

__version__ = "0.1.0"
