"""The masked-language-model head run at the predicted positions only.

Why: a ``*ForMaskedLM`` forward projects every position onto the whole vocabulary, then the loss
looks at the ~15 % of positions that carry a label. For a small encoder that projection is about half
of the forward compute: MiniLM-L6 (hidden 384, 6 layers, vocabulary 30,522) spends ~11 M
multiply-adds per token in its encoder and ~12 M in the head's 384 x 30,522 decoder, and the backward
pass doubles both; the softmax over 30,522 logits per position is memory traffic on top. Large-scale
BERT pretraining gathers the masked positions before the head (``gather_indexes`` in Google's
``run_pretraining.py``); so does this module, with the model's own head modules and weights, so the
loss, its gradients and the saved checkpoint are the model's own.

``masked_loss(model, inputs)``: the encoder's last hidden states at the positions where
``labels != -100`` -> the model's MLM head -> cross-entropy, the mean over predicted tokens (the value
of ``model(**inputs).loss``). ``masked_logits(model, batch, where)``: the (masked, vocabulary) logits
of the same positions, for evaluation.

Families handled exactly, recognised by their transformers class (not a subclass, which may change
the forward): BERT (``cls``), RoBERTa / XLM-RoBERTa / CamemBERT (``lm_head``), ELECTRA's generator
(``generator_predictions`` + ``generator_lm_head``), DistilBERT (``vocab_transform``, ``activation``,
``vocab_layer_norm``, ``vocab_projector``), ALBERT (``predictions``), DeBERTa v1 and v2/v3 (``cls``
in legacy checkpoints, else ``lm_predictions`` with the word embeddings), ModernBERT (``head`` +
``decoder``; an encoder that returns unpadded hidden states, as older ModernBERT code did under
FlashAttention, is handed to the full forward). The encoder is called with the inputs the model's own
forward would give it (``input_ids``, ``attention_mask``, ``token_type_ids`` and ``position_ids`` where
its encoder takes them).

Not handled: any other model (a ``trust_remote_code`` class, a subclass, another family) runs its
normal forward and its own loss: correct, just not faster.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from bertkit.masking import IGNORE


# What a model's forward passes on to its encoder, when that encoder takes it by name.
_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def _roberta(model: Any, hidden: Any) -> Any:
    return model.lm_head(hidden)


def _deberta(model: Any, hidden: Any) -> Any:
    if model.legacy:
        return model.cls(hidden)
    return model.lm_predictions(hidden, model.deberta.embeddings.word_embeddings)


# class name -> (attribute of the encoder, the head: (model, hidden (n, hidden)) -> logits (n, vocab)),
# each exactly what that class's forward does after its encoder.
HEADS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "BertForMaskedLM": ("bert", lambda m, h: m.cls(h)),
    "RobertaForMaskedLM": ("roberta", _roberta),
    "XLMRobertaForMaskedLM": ("roberta", _roberta),
    "CamembertForMaskedLM": ("roberta", _roberta),
    "ElectraForMaskedLM": ("electra", lambda m, h: m.generator_lm_head(m.generator_predictions(h))),
    "DistilBertForMaskedLM": ("distilbert", lambda m, h: m.vocab_projector(
        m.vocab_layer_norm(m.activation(m.vocab_transform(h))))),
    "AlbertForMaskedLM": ("albert", lambda m, h: m.predictions(h)),
    "DebertaForMaskedLM": ("deberta", _deberta),
    "DebertaV2ForMaskedLM": ("deberta", _deberta),
    "ModernBertForMaskedLM": ("model", lambda m, h: m.decoder(m.head(h))),
}


def head_of(model: Any) -> tuple[str, Callable[[Any, Any], Any]] | None:
    """(encoder attribute, head function) when ``model`` is a class handled exactly, else None."""
    cls = type(model)
    if not cls.__module__.startswith("transformers."):
        return None
    found = HEADS.get(cls.__name__)
    if found is None or not hasattr(model, found[0]):
        return None
    return found


@lru_cache(maxsize=None)
def _takes(encoder_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(encoder_class.forward).parameters)


def _hidden(model: Any, batch: dict[str, Any]) -> Any | None:
    """The encoder's last hidden states, (batch, seq, hidden), or None when the model is not handled
    exactly (or its encoder did not return one row per input position)."""
    found = head_of(model)
    if found is None or batch.get("input_ids") is None:  # inputs_embeds: left to the model's own forward
        return None
    encoder = getattr(model, found[0])
    takes = _takes(type(encoder))
    kwargs = {k: batch[k] for k in _ENCODER_INPUTS if k in takes and batch.get(k) is not None}
    hidden = encoder(**kwargs)[0]
    if hidden.dim() != 3 or hidden.shape[:2] != batch["input_ids"].shape:
        return None
    return hidden


def masked_loss(model: Any, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(loss, {"loss", "logits"}): the mean cross-entropy over the positions where ``labels != -100``,
    computed from the head at those positions only; ``logits`` are (masked, vocabulary). A model not
    handled exactly returns its own forward's loss and outputs."""
    import torch

    labels = inputs["labels"]
    batch = {k: v for k, v in inputs.items() if k != "labels"}
    hidden = _hidden(model, batch)
    if hidden is None:
        outputs = model(**inputs)
        return outputs.loss, outputs
    where = labels != IGNORE  # (batch, seq)
    logits = HEADS[type(model).__name__][1](model, hidden[where.to(hidden.device)])  # (masked, vocab)
    # Upcast as ModernBERT's own loss does; in fp32 it is a no-op. A batch with nothing to predict
    # gives NaN, as the model's own loss does.
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[where].to(logits.device))
    return loss, {"loss": loss, "logits": logits}


def masked_logits(model: Any, batch: dict[str, Any], where: Any) -> Any:
    """Logits (masked, vocabulary) at the positions where ``where`` (batch, seq) is true, in row-major
    order; ``batch`` holds the model inputs without labels."""
    hidden = _hidden(model, batch)
    if hidden is None:
        logits = model(**batch).logits  # (batch, seq, vocab)
        return logits[where.to(logits.device)]
    return HEADS[type(model).__name__][1](model, hidden[where.to(hidden.device)])
