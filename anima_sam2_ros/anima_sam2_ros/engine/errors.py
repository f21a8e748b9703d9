"""Exception types of the engine: callers catch these, never bare ValueError/RuntimeError."""


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidInputError(EngineError, ValueError):
    """An image or prompt the engine cannot use (bad shape, NaN, outside the image, ...)."""


class UnknownObjectError(InvalidInputError, KeyError):
    """An object id that the tracker does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelLoadError(EngineError, RuntimeError):
    """Weights missing, corrupt, of the wrong architecture, or an unknown model name."""
