"""The store: SQLAlchemy models, the engine and sessions, and the Alembic runner.

Imports nothing of ours but the floor (config, errors, clock, paths).
"""
