"""bertkit.trainer's batch sampler: length-grouped batches, in an order drawn from (seed, epoch)."""

from __future__ import annotations

import random

from bertkit.trainer import EpochSeededSampler


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def test_batches_are_grouped_by_length_but_come_in_random_order() -> None:
    lengths = [random.Random(i).randint(5, 300) for i in range(803)]
    sampler = EpochSeededSampler(16, lengths, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first  # the same (seed, epoch), the same order: resumable
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert sorted(first) == list(range(803))
    batches = _batches(first, 16)
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima[0] == max(lengths)  # the longest batch first, as the stock sampler does
    assert len(batches[-1]) == 803 % 16  # the short batch last, so every other batch is full
    # grouped: a batch spans far less than random batches would
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 60
    # not a long-to-short walk: the stock sampler's mega-batches make maxima fall batch after batch
    falls = sum(a > b for a, b in zip(maxima[1:-1], maxima[2:-1]))
    assert falls < 0.7 * (len(maxima) - 3)
