"""Replacing Flask-Spark's answers: signal receivers and error handlers."""

from flask import Blueprint, Flask, redirect, session, url_for

from flask_spark import (
    NotSignedIn,
    logged_out,
    login_failed,
    spark_account,
    spark_login_required,
    token_obtained,
)


def remember_the_agent(app, **extra):
    """token_obtained: the sign-in just finished; spark_account (read at sign-in, no API
    call) and spark_api already see the new grant."""
    session["agent"] = {"id": spark_account.id, "name": spark_account.name}


def forget_the_agent(app, **extra):
    """logged_out: this browser is signed out; drop what the app kept about the user."""
    session.pop("agent", None)


def cancelled_goes_home(app, reason, **extra):
    """login_failed: a Response replaces the error page; None keeps it."""
    if reason == "cancelled":
        return redirect(url_for("home", signin="cancelled"))
    return None


# An API blueprint whose NotSignedIn answer is its own JSON, not the sign-in redirect.
api = Blueprint("api", __name__, url_prefix="/api")


@api.errorhandler(NotSignedIn)
def api_not_signed_in(error):
    # Sees spark_login_required's anonymous requests and the NotSignedIn (or
    # ReauthenticationRequired) of a spark_api call alike.
    return {"error": "sign_in_required", "login": url_for("spark.login")}, 401


@api.get("/me")
@spark_login_required
def me():
    return session["agent"]


def register(app: Flask) -> None:
    token_obtained.connect(remember_the_agent, app)
    logged_out.connect(forget_the_agent, app)
    login_failed.connect(cancelled_goes_home, app)
    app.register_blueprint(api)
