"""The central messenger server: accounts, rooms, history archive and push fan-out."""
__version__ = "0.1.0"
