"""prodemu: moto server plus the AWS behaviour prodaccess depends on.

Import ``prodemu.patches.apply()`` (done by ``python -m prodemu``) before serving.
"""

__all__ = ["state"]
