"""A term whose ==, != and truth raise, as a numpy array's would: messages and exit
reasons may be any object, and the runtime must never compare them blindly."""


class Evil:
    __hash__ = object.__hash__

    def __eq__(self, other):
        raise RuntimeError("Evil.__eq__")

    def __ne__(self, other):
        raise RuntimeError("Evil.__ne__")

    def __bool__(self):
        raise RuntimeError("Evil.__bool__")

    def __repr__(self):
        return "Evil()"
