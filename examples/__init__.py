"""Runnable examples (see the README): media stream bots on the `websockets` library."""
