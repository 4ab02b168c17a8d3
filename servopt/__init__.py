"""servopt: mathematical optimization for LLM serving.

Layers (ARCHITECTURE.md): instances -> costmodel -> models -> solvers -> analysis, and
instances/costmodel -> simulator -> analysis. This package is the front door: the CLI
(`servopt ...`), the per-kind dispatch (`servopt.kinds`) and the JSON Schemas.
"""
__version__ = "0.1.0"
