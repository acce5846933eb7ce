"""wsolbench's packaged protocol files: ``<protocol id>/protocol.toml``, ``<id>/datasets/*.toml`` and
``<id>/methods/*.toml``.

This folder is the repository's top-level ``protocols/``, installed (pyproject.toml ``package-dir``) as the
package ``wsolbench.protocols`` so that ``importlib.resources.files("wsolbench.protocols")`` finds it in a wheel
and in an editable install alike. It holds no code; :mod:`wsolbench.protocol_files` reads it.
"""
