"""servopt: mathematical optimization for LLM serving.

Layers (docs/architecture.md): instances -> costmodel -> models -> solvers -> analysis, and
instances/costmodel -> simulator -> analysis. This package is the front door: the CLI
(`servopt ...`), the per-kind dispatch (`servopt.kinds`) and the JSON Schemas.

The top-level folders ``instances/``, ``models/``, ``solvers/`` ... are installed as
``servopt.instances``, ``servopt.models`` ... (``[tool.setuptools.package-dir]`` in pyproject.toml).
When Python imports this package from a source checkout instead (a script or ``python -c`` run
from the repository root puts the root first on ``sys.path``), those folders sit beside this one,
not inside it; adding the root to ``__path__`` makes ``servopt.models`` resolve to ``models/``
there too, so the checkout imports exactly like the installed package.
"""
import os as _os

__version__ = "0.1.0"

_checkout_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout_root, "pyproject.toml")) and _os.path.isfile(
        _os.path.join(_checkout_root, "models", "__init__.py")):
    __path__.append(_checkout_root)  # noqa: F821 - __path__ is set by the import system
