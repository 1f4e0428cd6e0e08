"""Persistence and concurrency control: SQLAlchemy 2 rows, Alembic migrations, transactions."""

from poolvisor.store.engine import Store, default_url, normalize_url
from poolvisor.store.retry import Stale, with_retry

__all__ = ["Stale", "Store", "default_url", "normalize_url", "open_store", "with_retry"]


def open_store(url: str | None = None) -> Store:
    """A Store whose schema is at the latest migration (applied now if needed)."""
    from poolvisor.domain.errors import PoolvisorError, UnavailableError
    from poolvisor.store.migrate import upgrade

    store = Store(url)
    try:
        upgrade(store)
    except PoolvisorError:
        store.close()
        raise
    except Exception as e:  # connection refused, unwritable file, ...: one clear line
        store.close()
        msg = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise UnavailableError(f"database unavailable: {msg[0] if msg else type(e).__name__}") from None
    return store
