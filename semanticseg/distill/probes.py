"""Retrieval probes that do not saturate: many blocks, several facts and distractors, the fact's position swept,
and two-hop questions whose two facts sit in different blocks.

A probe is a window of `n_blocks` context blocks of real held-out text (each cut to `block_tokens`), some of
which end with a fact sentence, and a final block that asks a question and ends with the answer. Kinds:
- retrieval: `n_facts` facts "The access code for the NAME archive is NUMBER." in different blocks, plus a
  same-name distractor ("The room number of the NAME archive is OTHER."); one fact is asked for, its block at
  the swept relative position.
- two-hop: "The NAME archive is kept in the COLOUR room." and "The access code for the COLOUR room is NUMBER."
  in different blocks (the second at the swept position), with other names' pairs as distractors; the question
  names only the archive.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from semanticseg.distill.data import BlockedText
from semanticseg.errors import UserError

NAMES = ["amber", "basalt", "cobalt", "delta", "ember", "falcon", "granite", "harbor", "indigo", "juniper", "krypton", "lumen",
         "marble", "nectar", "onyx", "pewter"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "silver", "golden"]
POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(slots=True)
class Probe:
    """One probe window, what it tests, and how many tokens at the end of its final block are the answer."""

    window: BlockedText
    kind: str  # "retrieval" or "two-hop"
    n_blocks: int
    position: float  # relative position of the asked fact's block (0 = first block, 1 = last context block)
    answer_tokens: int


def probe_suite(filler: list[list[int]], tokenizer: Any, n_blocks: tuple[int, ...] = (16, 32, 64), per_cell: int = 4,
                block_tokens: int = 96, n_facts: int = 4, seed: int = 0) -> list[Probe]:
    """per_cell probes of each kind for every number of blocks and every position in POSITIONS."""
    rng = random.Random(seed)
    pool = [block[:block_tokens] for block in filler if len(block) >= 16]
    if not pool:
        raise UserError("no filler blocks of >= 16 tokens for the probes")

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    probes = []
    for count in n_blocks:
        for position in POSITIONS:
            for kind in ("retrieval", "two-hop"):
                for _ in range(per_cell):
                    probes.append(_one(rng, pool, encode, kind, count, position, min(n_facts, count // 2)))
    return probes


def _one(rng: random.Random, pool: list[list[int]], encode: Any, kind: str, count: int, position: float, n_facts: int) -> Probe:
    blocks = [list(rng.choice(pool)) for _ in range(count)]
    target = round(position * (count - 1))
    others = rng.sample([i for i in range(count) if i != target], 2 * n_facts - 1)
    names = rng.sample(NAMES, n_facts)
    numbers = [rng.randint(1000, 9999) for _ in names]
    facts: list[tuple[int, str]] = []
    if kind == "retrieval":
        facts.append((target, f"The access code for the {names[0]} archive is {numbers[0]}."))
        facts.append((others.pop(), f"The room number of the {names[0]} archive is {rng.randint(1000, 9999)}."))
        facts += [(others.pop(), f"The access code for the {name} archive is {number}.") for name, number in zip(names[1:], numbers[1:], strict=True)]
        question = f"Question: What is the access code for the {names[0]} archive?\nAnswer: The access code for the {names[0]} archive is"
    else:
        colours = rng.sample(COLOURS, n_facts)
        facts.append((target, f"The access code for the {colours[0]} room is {numbers[0]}."))
        facts.append((others.pop(), f"The {names[0]} archive is kept in the {colours[0]} room."))
        for name, colour, number in zip(names[1:], colours[1:], numbers[1:], strict=True):
            facts.append((others.pop(), f"The {name} archive is kept in the {colour} room."))
            if others:
                facts.append((others.pop(), f"The access code for the {colour} room is {number}."))
        question = f"Question: What is the access code for the room where the {names[0]} archive is kept?\nAnswer: The access code is"
    for index, sentence in facts:
        blocks[index] = blocks[index] + encode(f"\n{sentence}\n")
    answer = encode(f" {numbers[0]}")
    return Probe(BlockedText("probe", blocks, encode("\n" + question) + answer), kind, count, position, len(answer))


def summarise(probes: list[Probe], logps: list[float], hits: list[bool]) -> list[dict[str, Any]]:
    """Accuracy and mean answer log-p per (kind, number of blocks, position), plus per (kind, number of blocks)."""
    cells: dict[tuple[str, int, float | None], list[tuple[float, bool]]] = {}
    for probe, logp, hit in zip(probes, logps, hits, strict=True):
        for key in ((probe.kind, probe.n_blocks, probe.position), (probe.kind, probe.n_blocks, None)):
            cells.setdefault(key, []).append((logp, hit))
    return [{"kind": kind, "n_blocks": n, "position": pos, "n": len(v), "answer_logp": sum(x for x, _ in v) / len(v),
             "accuracy": sum(h for _, h in v) / len(v)} for (kind, n, pos), v in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] is None, kv[0][2] or 0))]
