"""The moving window behind every rate limit: at most `limit` hits in any window, per client."""

from services.web.ratelimit import MovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_limit_per_window_and_is_told_when_to_come_back():
    clock = Clock()
    window = MovingWindow(2, 10.0, clock)
    assert window.hit("a") == 0
    clock.now += 1
    assert window.hit("a") == 0
    clock.now += 1
    assert window.hit("a") == 8.0  # the first hit leaves the window 10 s after it came
    assert window.hit("b") == 0  # another client has a window of its own
    clock.now += 8.5
    assert window.hit("a") == 0  # the first hit left; the refused one never counted
    assert window.hit("a") == 0.5


def test_clients_without_a_hit_in_the_last_window_are_forgotten():
    clock = Clock()
    window = MovingWindow(5, 10.0, clock)
    window.hit("gone")
    clock.now += 6
    window.hit("active")
    clock.now += 5
    window.hit("active")
    assert set(window.hits) == {"active"}
