"""The toolkit's version: one place, read by setup.cfg's ``version = attr:`` and by every module that records it.

A core module (nothing imported), so lower layers read it without importing the package's face.
"""

__version__ = "0.1.0"
