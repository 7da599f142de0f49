"""Generated container names, Docker style: adjective_surname."""

from __future__ import annotations

import secrets

ADJECTIVES = ("brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly",
              "keen", "lucid", "merry", "nimble", "proud", "quiet", "sharp", "sunny",
              "tender", "vivid", "witty", "zealous")
SURNAMES = ("babbage", "curie", "darwin", "euler", "fermat", "galois", "hopper", "hypatia",
            "kepler", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie",
            "shannon", "thompson", "turing", "wozniak", "yalow")


def generate_name() -> str:
    return f"{secrets.choice(ADJECTIVES)}_{secrets.choice(SURNAMES)}_{secrets.token_hex(2)}"
