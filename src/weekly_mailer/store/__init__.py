"""The store: SQLAlchemy models, the engine and sessions, and the Alembic runner.

Imports nothing of ours but the floor (config, errors, clock, paths).
"""

# Every model module is imported here so that ``Base.metadata`` is complete for whoever imports
# any part of the store (Alembic's env.py, the migration agreement test).
from weekly_mailer.store import bounce_models as bounce_models  # noqa: E402,F401
from weekly_mailer.store import hold_models as hold_models  # noqa: E402,F401
from weekly_mailer.store import pacing_models as pacing_models  # noqa: E402,F401
from weekly_mailer.store import proof_models as proof_models  # noqa: E402,F401
from weekly_mailer.store import reader_models as reader_models  # noqa: E402,F401
