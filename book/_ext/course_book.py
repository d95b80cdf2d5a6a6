"""Sphinx tweaks of the course's book (loaded by _config.yml, sphinx.local_extensions).

Thebe (live code in the page) is off: readers run the notebooks in JupyterLab. Jupyter Book
still loads sphinx-thebe, which adds its settings script to every page twice, and the second
copy fails with "Identifier 'THEBE_JS_URL' has already been declared". This drops sphinx-thebe's
scripts from the pages: they would only ever load Thebe from a CDN.
"""

from __future__ import annotations


def _is_thebe_script(script) -> bool:
    filename = getattr(script, "filename", None) or str(script)
    body = (getattr(script, "attributes", None) or {}).get("body", "")
    return "sphinx-thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [script for script in scripts if not _is_thebe_script(script)]


def setup(app):
    app.connect("html-page-context", drop_thebe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
