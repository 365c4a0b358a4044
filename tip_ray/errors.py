"""The project's one error base class.

Every error tip-ray raises on purpose derives from `TipRayError`: the CLI turns any of them into
a one-line `tip-ray: error: ...` message, and they survive a trip through Ray's object store
(an actor that raises one, a driver that catches it) because pickling keeps only the message
and the keyword attributes named in `_fields`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TipRayError(Exception):
    """A failure whose message says what went wrong and what to change.

    Subclasses that carry extra attributes list them in `_fields` and take them as keyword
    arguments, so that `pickle` can rebuild the error in another process.
    """

    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str = "", **fields: Any):
        super().__init__(message)
        for name in self._fields:
            setattr(self, name, fields.get(name))
        unknown = set(fields) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        fields = {name: getattr(self, name, None) for name in self._fields}
        return (_rebuild, (type(self), self.message, fields))


def _rebuild(cls: type[TipRayError], message: str, fields: dict[str, Any]) -> TipRayError:
    return cls(message, **fields)
