"""Notices: rendering, dispatching the outbox, the notify and run jobs, previews."""
