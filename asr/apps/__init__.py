"""The project's commands that are applications in their own right (`asr serve`, ...)."""
