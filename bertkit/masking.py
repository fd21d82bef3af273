"""Masking for masked-language-model training: which tokens to predict, and what the model sees there.

Each example carries ``word_ids`` beside ``input_ids``: the index of the word every token belongs
to, ``-1`` for special tokens ([CLS], [SEP], padding), which are never masked. With whole-word
masking a word is picked with probability ``probability`` and then *all* its tokens are predicted;
with token masking each token is picked on its own. Either way every token's chance of being
predicted is ``probability``. Each picked token is then shown as ``[MASK]`` (``mask``), as a random
vocabulary token (``random``, never a special token) or unchanged (the rest), decided token by
token as in BERT's ``create_pretraining_data.py``.

Training batches draw their masks from torch's global generator (seeded by the Trainer, distinct
in every DataLoader worker). Evaluation sets are masked once, up front, by ``mask_example`` with a
generator seeded by (seed, example index): the same positions whatever the batching, so a model's
perplexity before and after training is measured on exactly the same predictions.

What this does not do: find words (``bertkit.corpus`` stores word ids: the tokenizer's own words, or
MeCab words for Japanese), or span masking of several words (SpanBERT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bertkit.errors import BertkitError

IGNORE = -100  # label of positions that are not predicted (the loss skips them)


@dataclass(frozen=True)
class Rates:
    probability: float = 0.15  # share of tokens predicted
    mask: float = 0.8  # of those: shown as [MASK]
    random: float = 0.1  # of those: shown as a random token (the rest stay unchanged)
    whole_word: bool = True


def select(word_ids: np.ndarray, rng: np.random.Generator, probability: float, whole_word: bool) -> np.ndarray:
    """Boolean array: the positions to predict. Positions with word id -1 are never chosen."""
    eligible = word_ids >= 0
    if not eligible.any():
        return eligible
    if whole_word:
        chosen_words = rng.random(int(word_ids.max()) + 1) < probability
        return eligible & chosen_words[np.where(eligible, word_ids, 0)]
    return eligible & (rng.random(len(word_ids)) < probability)


def corrupt(input_ids: np.ndarray, chosen: np.ndarray, rng: np.random.Generator, rates: Rates, mask_id: int,
            random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids the model sees, labels): chosen positions become [MASK] / random / unchanged."""
    labels = np.where(chosen, input_ids, IGNORE)
    draw = rng.random(len(input_ids))
    ids = input_ids.copy()
    ids[chosen & (draw < rates.mask)] = mask_id
    to_random = chosen & (draw >= rates.mask) & (draw < rates.mask + rates.random)
    ids[to_random] = rng.choice(random_ids, size=int(to_random.sum()))
    return ids, labels


def mask_example(input_ids: Any, word_ids: Any, rng: np.random.Generator, rates: Rates, mask_id: int,
                 random_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = np.asarray(word_ids, dtype=np.int64)
    chosen = select(words, rng, rates.probability, rates.whole_word)
    return corrupt(np.asarray(input_ids, dtype=np.int64), chosen, rng, rates, mask_id, random_ids)


def example_rng(seed: int, index: int) -> np.random.Generator:
    """The generator that masks evaluation example ``index``: independent of order and batching."""
    return np.random.default_rng([seed, index])


@dataclass
class Collator:
    """Pads a batch and masks the examples that are not masked yet (those without ``labels``).

    Returns tensors ``input_ids``, ``attention_mask``, ``token_type_ids`` (all zero: one segment)
    and ``labels`` (``-100`` where nothing is predicted), padded to a multiple of 8.
    """

    pad_id: int
    mask_id: int
    random_ids: np.ndarray
    rates: Rates
    pad_to_multiple_of: int = 8

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, rates: Rates) -> Collator:
        if tokenizer.mask_token_id is None:
            raise BertkitError(f"the tokenizer ({type(tokenizer).__name__}) has no mask token, so it cannot be used for "
                               "masked-language-model training", "use a BERT-style tokenizer with [MASK] in its vocabulary")
        random_ids = np.setdiff1d(np.arange(len(tokenizer)), np.asarray(tokenizer.all_special_ids))
        return cls(pad_id=tokenizer.pad_token_id or 0, mask_id=tokenizer.mask_token_id, random_ids=random_ids,
                   rates=rates)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rng = None
        ids, labels = [], []
        for feature in features:
            if "labels" in feature:  # masked once, up front (evaluation)
                ids.append(np.asarray(feature["input_ids"], dtype=np.int64))
                labels.append(np.asarray(feature["labels"], dtype=np.int64))
                continue
            if rng is None:  # drawn from torch so that Trainer seeding and worker seeds apply
                rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            masked, label = mask_example(feature["input_ids"], feature["word_ids"], rng, self.rates, self.mask_id,
                                         self.random_ids)
            ids.append(masked)
            labels.append(label)
        if rng is not None:
            self._at_least_one(features, ids, labels, rng)
        width = max(len(x) for x in ids)
        width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        batch_labels = np.full((len(ids), width), IGNORE, dtype=np.int64)
        attention = np.zeros((len(ids), width), dtype=np.int64)
        for row, (x, y) in enumerate(zip(ids, labels)):  # (batch, seq)
            batch_ids[row, : len(x)] = x
            batch_labels[row, : len(y)] = y
            attention[row, : len(x)] = 1
        return {"input_ids": torch.from_numpy(batch_ids), "attention_mask": torch.from_numpy(attention),
                "token_type_ids": torch.zeros_like(torch.from_numpy(batch_ids)), "labels": torch.from_numpy(batch_labels)}

    def mask_fixed(self, batch: dict[str, list[Any]], indices: list[int], *, seed: int) -> dict[str, list[Any]]:
        """``Dataset.map`` function: mask evaluation examples once, each with its own seeded generator."""
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "masked": []}
        for index, ids, words in zip(indices, batch["input_ids"], batch["word_ids"]):
            masked, labels = mask_example(ids, words, example_rng(seed, index), self.rates, self.mask_id, self.random_ids)
            out["input_ids"].append(masked.tolist())
            out["labels"].append(labels.tolist())
            out["masked"].append(int((labels != IGNORE).sum()))
        return out

    def _at_least_one(self, features: list[dict[str, Any]], ids: list[np.ndarray], labels: list[np.ndarray],
                      rng: np.random.Generator) -> None:
        """A batch with nothing to predict has an undefined (NaN) loss: predict one word of it instead."""
        if any((y != IGNORE).any() for y in labels):
            return
        for row, feature in enumerate(features):
            words = np.asarray(feature["word_ids"], dtype=np.int64)
            eligible = np.flatnonzero(words >= 0)
            if len(eligible):
                pick = rng.choice(eligible)
                chosen = words == words[pick] if self.rates.whole_word else np.arange(len(words)) == pick
                original = np.asarray(feature["input_ids"], dtype=np.int64)
                ids[row], labels[row] = corrupt(original, chosen, rng, self.rates, self.mask_id, self.random_ids)
                return
