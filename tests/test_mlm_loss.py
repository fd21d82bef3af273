"""The masked-language-model head at the predicted positions only (``bertkit.tasks.mlm_head``) against the
model's own forward: the same loss and the same gradients for every family bertkit serves, the same
logits at the masked positions, the model's own loss for a model it does not know, and the Trainer hook
that uses it (``BertkitTrainer(model_loss=...)``).

The reference is always the model's own ``model(**batch)`` (transformers' full-vocabulary head and its
loss); the batches are bertkit's own (tokenised through ``corpus``, padded and masked by ``masking``),
so padding, token types and special tokens are what training sees.
"""

from __future__ import annotations

import families
import numpy as np
import pytest
import torch

from bertkit import corpus, encoding, masking
from bertkit.tasks import mlm_head

LINES = ["the movie was really good and the acting was superb", "a boring film",
         "How the story of Anna in Paris was told is not at all dull", "Bob met Tom in Rome",
         "the music of this show was lovely, great and fun", "it is a very poor book"]
WORDS = sorted({w.strip(",") for line in LINES for w in line.split()}) + ["lives", "in"]


def _batch(tokenizer, seed: int = 0, probability: float = 0.4) -> dict[str, torch.Tensor]:
    """bertkit's training batch of LINES (one example each, padded to a multiple of 8), masked with a
    seeded draw; a high rate so that every row predicts something."""
    budget = 64 - encoding.n_specials(tokenizer, False)
    feats = corpus.encode_batch({"text": LINES}, tokenizer=tokenizer, column="text", budget=budget, line_by_line=True)
    collate = masking.Collator.for_tokenizer(tokenizer, masking.Rates(probability=probability))
    rng = np.random.default_rng(seed)
    rows = []
    for ids, words in zip(feats["input_ids"], feats["word_ids"]):
        masked, labels = masking.mask_example(ids, words, rng, collate.rates, collate.mask_id, collate.random_ids)
        rows.append({"input_ids": masked.tolist(), "labels": labels.tolist()})
    batch = collate(rows)
    assert (batch["labels"] != -100).sum() > 5 and batch["attention_mask"].eq(0).any()  # something padded
    return batch


def _model(family: str, variant: str | None = None):
    """The tiny model of ``families.py``, or a variant built here: DeBERTa-v2 with either head
    (legacy ``cls``, ``lm_predictions``), DeBERTa v1, CamemBERT."""
    import transformers as tf

    tokenizer = families.build_tokenizer(family, WORDS)
    if variant is None:
        return families.build_model(family, tokenizer), tokenizer
    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "max_position_embeddings": 128}
    if variant == "deberta-v2-legacy":
        return tf.DebertaV2ForMaskedLM(tf.DebertaV2Config(**families.TINY, **ids, legacy=True)), tokenizer
    if variant == "deberta-v2-new-head":
        return tf.DebertaV2ForMaskedLM(tf.DebertaV2Config(**families.TINY, **ids, legacy=False)), tokenizer
    if variant == "camembert":
        config = tf.CamembertConfig(**families.TINY, **{**ids, "max_position_embeddings": 128 + tokenizer.pad_token_id + 1},
                                    type_vocab_size=1)
        return tf.CamembertForMaskedLM(config), tokenizer
    if variant == "deberta":
        return tf.DebertaForMaskedLM(tf.DebertaConfig(**families.TINY, **ids, relative_attention=True,
                                                      pos_att_type=["p2c", "c2p"])), tokenizer
    raise ValueError(variant)


CASES = [(f, None) for f in families.FAMILIES] + [
    ("deberta-v2", "deberta-v2-legacy"), ("deberta-v2", "deberta-v2-new-head"), ("deberta-v2", "deberta"),
    ("roberta", "camembert")]


def _grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("family", "variant"), CASES, ids=[v or f for f, v in CASES])
def test_masked_loss_and_gradients_equal_the_models_own(family: str, variant: str | None) -> None:
    model, tokenizer = _model(family, variant)
    assert mlm_head.head_of(model) is not None, f"{type(model).__name__} should be handled exactly"
    batch = _batch(tokenizer)
    model.train()  # with dropout: the encoder draws its masks in the same order on both paths
    torch.manual_seed(1)
    own = model(**batch)
    own.loss.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss, outputs = mlm_head.masked_loss(model, batch)
    loss.backward()
    got = _grads(model)

    assert loss.item() == pytest.approx(own.loss.item(), abs=1e-5)
    where = batch["labels"] != -100
    assert outputs["logits"].shape == (int(where.sum()), model.config.vocab_size)
    assert set(got) == set(expected)  # every parameter the model's loss reaches, and no other
    decoder = model.get_output_embeddings().weight
    assert any(p is decoder for n, p in model.named_parameters() if n in got)  # the vocabulary projection
    assert len(got) > 10  # embeddings, both layers, the head
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("family", ["bert", "roberta", "modernbert"])
def test_masked_logits_are_the_models_logits_at_the_masked_positions(family: str) -> None:
    model, tokenizer = _model(family)
    batch = _batch(tokenizer, seed=3)
    labels = batch.pop("labels")
    where = labels != -100
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits[where]
        got = mlm_head.masked_logits(model, batch, where)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_model_it_does_not_know_runs_its_own_forward() -> None:
    import transformers as tf

    class Custom(tf.BertForMaskedLM):  # a subclass may change forward(): not handled exactly
        pass

    model, tokenizer = _model("bert")
    custom = Custom(model.config).eval()
    assert mlm_head.head_of(custom) is None
    batch = _batch(tokenizer)
    loss, outputs = mlm_head.masked_loss(custom, batch)
    with torch.no_grad():
        own = custom(**batch)
    assert loss.item() == pytest.approx(own.loss.item(), abs=1e-6)
    assert outputs.logits.shape == (*batch["input_ids"].shape, custom.config.vocab_size)
    where = batch.pop("labels") != -100
    with torch.no_grad():
        torch.testing.assert_close(mlm_head.masked_logits(custom, batch, where), own.logits[where])


def test_trainer_uses_the_task_loss_and_trains_as_the_model_would(tmp_path) -> None:
    """Two steps of BertkitTrainer with model_loss and without: the function is called on the unwrapped
    model, and the logged losses and the weights after training are the same."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from bertkit.trainer import BertkitTrainer

    _, tokenizer = _model("bert")
    batch = _batch(tokenizer)
    rows = [{"input_ids": ids[m.bool()].tolist(), "labels": y[m.bool()].tolist()}
            for ids, y, m in zip(batch["input_ids"], batch["labels"], batch["attention_mask"])]
    data = Dataset.from_list(rows * 2)
    collate = masking.Collator.for_tokenizer(tokenizer, masking.Rates())
    calls = []

    def counted(model, inputs):
        calls.append(type(model).__name__)
        return mlm_head.masked_loss(model, inputs)

    results = {}
    for name, fn in (("task", counted), ("stock", None)):
        model = families.build_model("bert", tokenizer)
        model.accepts_loss_kwargs = False  # as train.run sets it
        args = TrainingArguments(output_dir=str(tmp_path / name), max_steps=2, per_device_train_batch_size=6,
                                 per_device_eval_batch_size=6, learning_rate=1e-3, logging_steps=1, seed=5,
                                 save_strategy="no", eval_strategy="no", report_to="none", use_cpu=True,
                                 remove_unused_columns=False)
        trainer = BertkitTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, data_collator=collate,
                                 model_loss=fn, console_level="quiet")
        trainer.train()
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        results[name] = (losses, trainer.evaluate()["eval_loss"], model.bert.embeddings.word_embeddings.weight.detach())
    assert calls and set(calls) == {"BertForMaskedLM"}
    assert len(calls) == 2 + 2  # two training steps, two loss-only evaluation batches
    assert results["task"][0] == pytest.approx(results["stock"][0], abs=1e-5)
    assert results["task"][1] == pytest.approx(results["stock"][1], abs=1e-5)
    torch.testing.assert_close(results["task"][2], results["stock"][2], atol=1e-5, rtol=1e-4)


def test_a_wrapped_model_takes_the_stock_loss(tmp_path) -> None:
    """A model inside a wrapper (DataParallel here; DDP the same way) is not taken apart: the wrapper's
    own forward, and so its gradient synchronisation, runs."""
    from transformers import TrainingArguments

    from bertkit.trainer import BertkitTrainer

    model, tokenizer = _model("bert")
    model.accepts_loss_kwargs = False
    calls = []
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = BertkitTrainer(model=model, args=args, model_loss=lambda m, i: calls.append(m) or mlm_head.masked_loss(m, i),
                             console_level="quiet")
    batch = _batch(tokenizer)
    model.eval()
    own = trainer.compute_loss(model, batch)
    wrapped = trainer.compute_loss(torch.nn.DataParallel(model), batch)
    assert len(calls) == 1 and calls[0] is model
    assert wrapped.item() == pytest.approx(own.item(), abs=1e-5)
