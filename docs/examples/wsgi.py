"""wsgi.py: the app as gunicorn serves it, behind one reverse proxy that terminates TLS."""

from flask import Flask
from flask_session import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_spark import Spark

app = Flask(__name__)
app.config.from_pyfile("settings.py")
Session(app)
Spark(app)

# Trust exactly one proxy's X-Forwarded-Proto and -Host, so that the redirect URI is
# https://portal.example.com/callback and sign-out's same-origin check sees https.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
