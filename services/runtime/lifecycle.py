import asyncio


class Stop:
    """Asks background loops to finish the step they are in and return: a graceful shutdown
    never cancels a transaction half-way, and whatever was not committed is redone later."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @classmethod
    def after(cls, seconds: float) -> "Stop":
        """A stop that sets itself: a deadline for work that must not wait forever."""
        stop = cls()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        return stop

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early when asked to stop."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            pass
