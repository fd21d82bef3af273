"""bertkit's entity scores (seqeval, with scheme detection) as a Hugging Face ``evaluate`` module.

    import evaluate
    from bertkit.metrics import evaluate_module
    entities = evaluate.load(evaluate_module("entities"))
    entities.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])

Tag sequences in IOB1, IOB2, BIOES or IO (detected from the references unless ``scheme`` is given),
``strict=True`` for seqeval's strict mode. Returns what ``bertkit.metrics.entities.entity_scores``
returns (the numbers ``bertkit finetune`` reports for word-level NER): precision, recall, f1,
accuracy, macro_f1, per_type, n_true, n_pred. Loads offline, unlike ``evaluate.load("seqeval")``.
"""

import datasets
import evaluate

from bertkit.metrics.entities import detect_scheme, entity_scores


class BertkitEntities(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Entity-level precision, recall and F1 (seqeval), token accuracy, per-type scores.",
            citation="seqeval (Nakayama 2018); conlleval (CoNLL-2000)",
            inputs_description="predictions, references: lists of tag sequences, one per sentence",
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, scheme=None, strict=False):
        scheme = scheme or detect_scheme(references)
        return entity_scores(references, predictions, scheme, strict=strict)
