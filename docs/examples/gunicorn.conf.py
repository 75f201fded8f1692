"""gunicorn.conf.py: run with `gunicorn -c gunicorn.conf.py`."""

wsgi_app = "wsgi:app"
bind = "127.0.0.1:8000"  # the reverse proxy forwards here
workers = 4  # processes: each has its own connection pool to the platform
threads = 8  # threads per process: requests of one session may run at once
preload_app = True  # safe: connection pools are made again in each worker
