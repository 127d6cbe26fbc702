"""The scrape forecast: which variants to render ahead, from when each scraper asked before."""

from exporter.forecast import FORGET_AFTER_SECONDS, MAX_SCRAPERS, ScrapeForecast
from exporter.render import Format
from tests.clock import Clock

OM_GZ, TEXT = (Format.OPENMETRICS, True), (Format.TEXT, False)


def test_a_variant_is_due_only_around_the_next_request_of_a_steady_scraper():
    clock = Clock(100.5)
    forecast = ScrapeForecast(clock)
    forecast.note(OM_GZ, "p")
    assert forecast.due(1.0) == set()  # one request: no period yet
    clock.now = 130.5
    forecast.note(OM_GZ, "p")  # every 30 s
    due_at = []
    for t in range(131, 200):
        clock.now = float(t)
        if forecast.due(1.0):
            due_at.append(t)
    # one snapshot each: the one published at 160, current when it asks at 160.5; it misses
    # that request, so again for 190.5; after two missed requests it has stopped
    assert due_at == [160, 190]


def test_scrapers_are_forgotten_when_silent_and_at_most_max_scrapers_are_kept():
    clock = Clock(0.0)
    forecast = ScrapeForecast(clock)
    for n in range(MAX_SCRAPERS + 5):
        forecast.note(TEXT, f"10.0.0.{n}")
        clock.advance(0.001)
    assert len(forecast._scrapers) == MAX_SCRAPERS
    assert (TEXT, "10.0.0.0") not in forecast._scrapers  # the least recent went first
    assert forecast.wanted() == {TEXT}
    clock.advance(FORGET_AFTER_SECONDS + 1)
    assert forecast.due(1.0) == set() and forecast.wanted() == set()
