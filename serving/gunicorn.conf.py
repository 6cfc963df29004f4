"""gunicorn settings for `gunicorn -c serving/gunicorn.conf.py "serving:create_app()"`.

Threads, not many processes: each worker holds its own model in memory (about 100 MB with ONNX int8), and
the encoder releases the GIL while it computes.
"""

import os

bind = os.environ.get("HELPLOOP_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("HELPLOOP_WORKERS", "2"))
threads = int(os.environ.get("HELPLOOP_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
keepalive = 5
# Never preload: each worker builds its own app, database engine and model holder after the fork.
preload_app = False
accesslog = os.environ.get("HELPLOOP_ACCESS_LOG", "-") or None
errorlog = "-"
