"""A small generated organisation's size, shared by the simulation tests."""

from __future__ import annotations

from typing import TypedDict


class Size(TypedDict):
    """``generate``'s size arguments."""

    actors: int
    teams: int
    agents: int
    weeks: int
    instances: int


#: Small enough to generate in a second, large enough for every plant.
SMALL: Size = {"actors": 24, "teams": 4, "agents": 3, "weeks": 6, "instances": 1}
