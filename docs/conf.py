"""Sphinx configuration for the Flask-Spark documentation (``tox -e docs``)."""

from importlib.metadata import version as _version

project = "Flask-Spark"
author = "the Flask-Spark authors"
copyright = "2026, the Flask-Spark authors"
release = _version("Flask-Spark")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# examples/ holds the samples the pages include; they are tested, not pages themselves.
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
autoclass_content = "class"

default_role = "code"

html_theme = "furo"
html_title = f"Flask-Spark {release}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": True}
