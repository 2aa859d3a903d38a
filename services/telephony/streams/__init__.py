"""Bidirectional media streams (Twilio Media Streams compatible), see docs/media-streams.md.

``protocol``: the WebSocket messages, pure; ``playout``: the app's audio waiting to be
played, pure; ``client``: the WebSocket edge one call's stream runs on.
"""
