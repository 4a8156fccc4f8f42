"""List models behind the QML views: rooms, the open room's messages, its members.

They hold plain Python data and are changed only from the Qt thread (the bridge applies peer
events to them there), so tests drive them by feeding events, without QML or a server."""
from .members import MembersModel
from .messages import MessagesModel
from .rooms import RoomsModel

__all__ = ["MembersModel", "MessagesModel", "RoomsModel"]
