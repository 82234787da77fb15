"""The trip-planning toolset, in the spirit of the DeepSeek-V3.2 example (deepseek_v32.md §6.4).

List tools return names only (paginated on harder worlds), so prices, ratings, opening days
and categories cost one info call per venue: the information a plan needs is spread over
many calls, which is what makes the search hard while checking a plan stays easy.
``get_weather`` joins the toolset only when a task has a weather rule and
``get_local_transport`` is a distractor on the hardest tasks (toolset augmentation: the toolset
grows when the task needs it, see :func:`toolset`).

Every tool taking a name (a city, a venue) follows the one name rule of
:mod:`toolgym.envs.naming`: NFC, surrounding whitespace trimmed, case-sensitive, and a miss
names the closest name of the right kind. Results echo the world's spelling of a name. Every
list tool pages the same way whether or not the world paginates: a page past the end is an
error that says how many pages there are (an unpaginated list is one page).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs import naming
from toolgym.envs.strict import Page, Text
from toolgym.envs.tools import Tool, ToolError, as_tool, tool
from toolgym.synth.trip.world import TripWorld


class DayPlan(BaseModel):
    """One day of an itinerary."""

    model_config = ConfigDict(extra="forbid")

    date: Text = Field(description="ISO date of the day, e.g. 2026-05-01")
    city: Text = Field(description="city where the day is spent")
    hotel: Text = Field(description="hotel for the night, in that city")
    lunch: Text = Field(description="lunch restaurant, in that city")
    attraction: Text = Field(description="afternoon attraction, in that city")
    dinner: Text = Field(description="dinner restaurant, in that city")


def _city(world: TripWorld, city: str) -> str:
    """The world's spelling of a city, or a ToolError naming the closest city."""
    c = world.city(city)
    if c is None:
        raise ToolError(f"unknown city {city!r}{naming.hint(world.closest(city, 'city'))}")
    return c


def page_error(page: int, pages: int) -> ToolError:
    """The error for a page past the end: ``"page 9 does not exist; there is 1 page"``."""
    return ToolError(f"page {page} does not exist; there {'is 1 page' if pages == 1 else f'are {pages} pages'}")


def _page(items: list[str], page: int, size: int | None, key: str, extra: dict[str, Any]) -> dict[str, Any]:
    """One page of a list; an unpaginated list is one page, so page 2 of it is an error too."""
    if size is None:
        if page > 1:
            raise page_error(page, 1)
        return {**extra, key: items}
    pages = max(1, -(-len(items) // size))
    if page > pages:
        raise page_error(page, pages)
    return {**extra, key: items[(page - 1) * size : page * size], "page": page, "pages": pages}


def _by_city(world: TripWorld, kind: str, city: str, page: int) -> dict[str, Any]:
    """One page of the names of a city's venues of one kind."""
    c = _city(world, city)
    names = [v["name"] for v in world.by_kind[kind][c]]
    return _page(names, page, world.page_size, kind + "s", {"city": c})


def _venue(world: TripWorld, name: str, kind: str) -> dict[str, Any]:
    hit = world.venue(name)
    if hit is None:
        raise ToolError(f"no {kind} named {name!r}{naming.hint(world.closest(name, kind))}")
    if hit[0] != kind:
        raise ToolError(f"{hit[1]['name']!r} is one of the {hit[0]}s, not the {kind}s; use get_{hit[0]}_info")
    return dict(hit[1])


@tool("read")
def get_all_cities(world: TripWorld, page: Page = 1) -> dict[str, Any]:
    """List every city in the travel region.

    Args:
        page: Page number (1-based) when the list is paginated.
    """
    return _page(world.cities, page, world.page_size, "cities", {})


@tool("read")
def get_hotels_by_city(world: TripWorld, city: str, page: Page = 1) -> dict[str, Any]:
    """List the names of the hotels in a city.

    Args:
        city: Exact city name.
        page: Page number (1-based) when the list is paginated.
    """
    return _by_city(world, "hotel", city, page)


@tool("read")
def get_restaurants_by_city(world: TripWorld, city: str, page: Page = 1) -> dict[str, Any]:
    """List the names of the restaurants in a city.

    Args:
        city: Exact city name.
        page: Page number (1-based) when the list is paginated.
    """
    return _by_city(world, "restaurant", city, page)


@tool("read")
def get_attractions_by_city(world: TripWorld, city: str, page: Page = 1) -> dict[str, Any]:
    """List the names of the attractions in a city.

    Args:
        city: Exact city name.
        page: Page number (1-based) when the list is paginated.
    """
    return _by_city(world, "attraction", city, page)


@tool("read")
def get_city_by_venue(world: TripWorld, name: str) -> dict[str, Any]:
    """Find which city a hotel, restaurant or attraction is in.

    Args:
        name: Exact venue name.
    """
    hit = world.venue(name)
    if hit is None:
        raise ToolError(f"no venue named {name!r}{naming.hint(world.closest(name))}")
    return {"name": hit[1]["name"], "kind": hit[0], "city": hit[1]["city"]}


@tool("read")
def get_hotel_info(world: TripWorld, name: str) -> dict[str, Any]:
    """Details of a hotel: city, stars, price per night and guest rating (1-5).

    Args:
        name: Exact hotel name.
    """
    return _venue(world, name, "hotel")


@tool("read")
def get_restaurant_info(world: TripWorld, name: str) -> dict[str, Any]:
    """Details of a restaurant: city, cuisine, price per person, rating (1-5), weekdays closed.

    Args:
        name: Exact restaurant name.
    """
    return _venue(world, name, "restaurant")


@tool("read")
def get_attraction_info(world: TripWorld, name: str) -> dict[str, Any]:
    """Details of an attraction: city, category, indoor or not, ticket price, rating, weekdays closed.

    Args:
        name: Exact attraction name.
    """
    return _venue(world, name, "attraction")


@tool("read")
def get_inter_city_transport(world: TripWorld, from_city: str, to_city: str) -> dict[str, Any]:
    """Direct connections between two cities (each runs both ways at the same price).

    Args:
        from_city: Exact name of the departure city.
        to_city: Exact name of the arrival city.
    """
    a, b = _city(world, from_city), _city(world, to_city)
    return {"from": a, "to": b, "options": world.transport(a, b)}


@tool("read")
def get_weather(world: TripWorld, city: str, date: str) -> dict[str, Any]:
    """Weather forecast of a city on a date.

    Args:
        city: Exact city name.
        date: ISO date, e.g. 2026-05-01.
    """
    c = _city(world, city)
    forecast = world.weather(c, date)
    if forecast is None:
        dates = world.data["dates"]
        raise ToolError(f"no forecast for {date!r}; forecasts cover {dates[0]} to {dates[-1]}")
    return {"city": c, "date": date, **forecast}


@tool("read")
def get_local_transport(world: TripWorld, city: str) -> dict[str, Any]:
    """Public transport inside a city (lines and day-pass price).

    Args:
        city: Exact city name.
    """
    c = _city(world, city)
    n = sum(map(ord, c))
    return {"city": c, "lines": 2 + n % 7, "day_pass": 3 + n % 9}


@tool("read")  # submit changes no state; the env intercepts it and ends the episode
def submit(world: TripWorld, answer: list[DayPlan]) -> str:
    """Submit the final itinerary; this ends the episode.

    Args:
        answer: One object per day, in order, with exact names as the tools spell them.
    """
    return "submitted"


BASE_TOOLS = (
    get_all_cities,
    get_hotels_by_city,
    get_restaurants_by_city,
    get_attractions_by_city,
    get_city_by_venue,
    get_hotel_info,
    get_restaurant_info,
    get_attraction_info,
    get_inter_city_transport,
)


def toolset(tool_config: dict[str, Any]) -> list[Tool]:
    """The tools of a task: the base set, plus weather / the distractor when the config says."""
    fns: list[Any] = list(BASE_TOOLS)
    if tool_config.get("weather"):
        fns.append(get_weather)
    if tool_config.get("distractor_tools"):
        fns.append(get_local_transport)
    fns.append(submit)
    return [as_tool(f) for f in fns]
