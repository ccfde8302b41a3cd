"""gunicorn settings for authsvc: `gunicorn wsgi:app` reads this file.

gunicorn binds 127.0.0.1:8000 by default, or 0.0.0.0:$PORT when PORT is set;
`--bind` overrides both.
"""

import multiprocessing
import os

# Sync workers: signin is bcrypt, CPU-bound, so more threads per worker would
# only queue behind the GIL. Two per core keeps a core busy while the other
# worker waits on the database.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = "sync"
timeout = 30
graceful_timeout = 30
# Load the app once in the master: a bad setting stops the service with its
# one-line message instead of a crash loop of workers, and workers share memory.
preload_app = True
# Recycle workers now and then so that no slow leak grows without bound.
max_requests = 20000
max_requests_jitter = 2000
errorlog = "-"
accesslog = None


def post_fork(server, worker):
    """Give each worker its own database connections, never the master's."""
    from authsvc.extensions import db
    from wsgi import app

    with app.app_context():
        db.engine.dispose(close=False)
