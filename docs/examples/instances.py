"""An agent portal and its agents' VOW portals in one app: two Spark instances."""

from flask import Flask, render_template_string, request
from flask_session import Session

from flask_spark import Spark, spark_account, spark_api, spark_login_required

# The agent portal: the default instance, SPARK_ keys, blueprint "spark" at the root.
agents = Spark()
# The consumers' portals: keys SPARK_VOW_..., blueprint "vow" at /portal/<portal>/.
consumers = Spark(
    name="vow",
    url_prefix="/portal/<portal>",
    portal_loader=lambda: (request.view_args or {}).get("portal"),
)


def create_app(**config):
    app = Flask(__name__)
    app.config.update(
        SPARK_AUTH_FLOW="openid",  # agents sign in with OpenID Connect
        SPARK_VOW_ROLE="vow",  # consumers with OAuth 2, the only flow VOW keys have
        SPARK_VOW_LOGIN_REDIRECT="/portal/",
        **config,
    )
    Session(app)
    agents.init_app(app)
    consumers.init_app(app)

    @app.get("/dashboard")
    @spark_login_required  # served by the default instance: off to /login
    def dashboard():
        return {"agent": spark_account.name, "listings": len(spark_api.get("/my/listings"))}

    @app.get("/portal/<portal>/")
    def portal_home(portal):
        # Below /portal/<portal>/ the "vow" instance serves: spark_api, spark_account and
        # spark_login_required are the consumer's, for this portal.
        return render_template_string(
            "{% if me %}Welcome, {{ me.name }}"
            "<form method=post action='{{ url_for('vow.logout') }}'><button>Sign out</button>"
            "</form>{% else %}<a href='{{ url_for('vow.login') }}'>Sign in</a>{% endif %}",
            me=spark_account,
        )

    @app.get("/portal/<portal>/listings")
    @spark_login_required  # sends the consumer to /portal/<portal>/login?next=...
    def listings(portal):
        return {"portal": portal, "listings": len(spark_api.get("/listings", _limit=5))}

    @app.get("/portal/<portal>/agent-view")
    @agents.login_required  # an instance named explicitly
    def agent_view(portal):
        consumer = consumers.account
        return {"agent": agents.account.name, "consumer": consumer and consumer.name}

    return app
