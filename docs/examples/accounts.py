"""The app's own users on top of the Flexmls sign-in: spark_user, and Flask-Login."""

from dataclasses import dataclass

from flask import Flask
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)

from flask_spark import Spark, logged_out, spark_account, spark_user, token_obtained

spark = Spark()
login_manager = LoginManager()
login_manager.login_view = "spark.login"  # Flask-Login's login_required sends people here


@dataclass
class User(UserMixin):
    id: str  # the Spark account's Id
    name: str | None
    email: str | None


USERS: dict[str, User] = {}  # stands for the app's own user table


@spark.account_loader
def user_of(account):
    """What spark_user is: the app's user for the signed-in Spark account (no API call)."""
    return USERS.get(account.id)


def remember_user(app, account_id, **extra):
    """token_obtained: an account's first sign-in makes its user; every one logs it in."""
    user = USERS.setdefault(account_id, User(account_id, spark_account.name, spark_account.email))
    login_user(user)


def forget_user(app, **extra):
    """logged_out: this browser signed out of Flexmls, so out of Flask-Login too."""
    logout_user()


@login_manager.user_loader
def load_user(user_id):
    # The Flexmls sign-in decides: once it is over (signed out in any browser, revoked,
    # refused), spark_account is falsy and Flask-Login's user is gone too.
    if not spark_account or spark_account.id != user_id:
        return None
    return USERS.get(user_id)


def init_app(app: Flask) -> None:
    """In the app factory, after Session(app)."""
    spark.init_app(app)
    login_manager.init_app(app)
    token_obtained.connect(remember_user, app)
    logged_out.connect(forget_user, app)

    @app.get("/")
    @login_required  # Flask-Login's
    def home():
        return f"Hello, {current_user.name} ({current_user.email})"

    @app.get("/whoami")
    def whoami():
        # Without Flask-Login: spark_user, or spark_account for the Spark side alone.
        if not spark_user:  # a proxy: test it, never compare it with `is None`
            return {"signed_in": False}
        return {"signed_in": True, "user": spark_user.name, "office": spark_account.office_id}
