"""A whole portal: sign in with Flexmls, then greet the agent by name."""

from cachelib import FileSystemCache
from flask import Flask
from flask_session import Session

from flask_spark import Spark, spark_api, spark_login_required


def create_app(**config):
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_SPARK_CLIENT_ID, FLASK_SPARK_CLIENT_SECRET, ...
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache("sessions"))
    app.config.update(config)
    Session(app)
    Spark(app)

    @app.get("/")
    @spark_login_required
    def home():
        account = spark_api.get("/my/account")[0]
        return f"Signed in as {account['Name']}"

    return app
