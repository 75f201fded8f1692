"""One app for many agents' VOW portals: /alpha/..., /beta/..., one portal per URL."""

from flask import Flask, render_template_string, request
from flask_session import Session

from flask_spark import Spark, spark_account, spark_api, spark_login_required

spark = Spark(url_prefix="/<portal>")  # /<portal>/login, /<portal>/callback, /<portal>/logout


@spark.portal_loader
def portal_from_url():
    # None (no portal in this URL) falls back to SPARK_PORTAL, or 404 without one.
    return (request.view_args or {}).get("portal")


def create_app(**config):
    app = Flask(__name__)
    app.config.update(SPARK_ROLE="vow", **config)
    Session(app)
    spark.init_app(app)

    @app.get("/<portal>/")
    def portal_home(portal):
        return render_template_string(
            "{% if signed_in %}<form method=post action='{{ url_for('spark.logout') }}'>"
            "<button>Sign out</button></form>"
            "{% else %}<a href='{{ url_for('spark.login') }}'>Sign in</a>{% endif %}",
            signed_in=spark_api.authenticated,  # signed in to *this* portal
        )

    @app.get("/<portal>/saved-searches")
    @spark_login_required  # sends the user to /<portal>/login?next=...
    def saved_searches(portal):
        # The consumer signed in to this portal, read from their grant: no API call.
        return {"portal": portal, "consumer": spark_account.name}

    return app
