"""The desktop client: PyQt5 + QML on top of ``messenger_peer``. QML is only the view; the
models and the bridge to the peer's gevent hub are Python (see docs/ui.md)."""
