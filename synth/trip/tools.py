"""The trip-planning toolset, in the spirit of the DeepSeek-V3.2 example (deepseek_v32.md §6.4).

List tools return names only (paginated on harder worlds), so prices, ratings, opening days
and categories cost one info call per venue: the information a plan needs is spread over
many calls, which is what makes the search hard while checking a plan stays easy.
``get_weather`` joins the toolset only when a task has a weather rule and
``get_local_transport`` is a distractor on the hardest tasks (toolset augmentation: the toolset
grows when the task needs it, see :func:`toolset`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.tools import Tool, ToolError, as_tool, tool
from toolgym.synth.trip.world import TripWorld

Page = Annotated[int, Field(ge=1)]


class DayPlan(BaseModel):
    """One day of an itinerary."""

    model_config = ConfigDict(extra="forbid")

    date: str = Field(description="ISO date of the day, e.g. 2026-05-01")
    city: str = Field(description="city where the day is spent")
    hotel: str = Field(description="hotel for the night, in that city")
    lunch: str = Field(description="lunch restaurant, in that city")
    attraction: str = Field(description="afternoon attraction, in that city")
    dinner: str = Field(description="dinner restaurant, in that city")


def _city(world: TripWorld, city: str) -> str:
    if city in world.city_set:
        return city
    # A cheap hint (no fuzzy matching: this path is hot for random agents).
    folded = {c.casefold(): c for c in world.cities}.get(" ".join(city.split()).casefold())
    hint = f"; did you mean {folded!r}?" if folded else "; call get_all_cities to list the cities"
    raise ToolError(f"unknown city {city!r}{hint}")


def _page(items: list[str], page: int, size: int | None, key: str, extra: dict[str, Any]) -> dict[str, Any]:
    if size is None:
        return {**extra, key: items}
    pages = max(1, -(-len(items) // size))
    if page > pages:
        raise ToolError(f"page {page} does not exist; the last page is {pages}")
    return {**extra, key: items[(page - 1) * size : page * size], "page": page, "pages": pages}


def _by_city(world: TripWorld, kind: str, city: str, page: int) -> dict[str, Any]:
    """One page of the names of a city's venues of one kind."""
    names = [v["name"] for v in world.by_kind[kind][_city(world, city)]]
    return _page(names, page, world.page_size, kind + "s", {"city": city})


def _venue(world: TripWorld, name: str, kind: str) -> dict[str, Any]:
    hit = world.venue(name)
    if hit is None:
        raise ToolError(f"no {kind} named {name!r}; names must match the list tools exactly")
    if hit[0] != kind:
        raise ToolError(f"{name!r} is one of the {hit[0]}s, not the {kind}s; use get_{hit[0]}_info")
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
        raise ToolError(f"no venue named {name!r}")
    return {"name": name, "kind": hit[0], "city": hit[1]["city"]}


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
    forecast = world.weather(_city(world, city), date)
    if forecast is None:
        dates = world.data["dates"]
        raise ToolError(f"no forecast for {date!r}; forecasts cover {dates[0]} to {dates[-1]}")
    return {"city": city, "date": date, **forecast}


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
