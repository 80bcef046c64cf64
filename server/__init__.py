"""The live digit recognizer's server: the app factory is in server/app.py.

Deliberately empty: `python -m server` imports this package before it runs
server/__main__.py, which (in eventlet mode) must monkey-patch the standard library before
flask, socketio or any lock is imported.
"""
