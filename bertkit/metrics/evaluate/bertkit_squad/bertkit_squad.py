"""bertkit's SQuAD exact match / F1 as a Hugging Face ``evaluate`` module that loads offline.

    import evaluate
    from bertkit.metrics import evaluate_module
    squad = evaluate.load(evaluate_module("squad"))
    squad.compute(predictions=[{"id": "1", "prediction_text": "Denver Broncos"}],
                  references=[{"id": "1", "answers": {"text": ["Denver Broncos"], "answer_start": [177]}}],
                  lang="en")

Inputs are those of the hub's ``squad`` metric; ``lang="ja"`` scores as JGLUE did for JSQuAD.
Scores are ``bertkit.metrics.squad.squad_scores`` (0-100), the numbers ``bertkit finetune`` and
``bertkit evaluate`` report. ``evaluate.load("squad")`` needs the Hub; this path does not.
"""

import datasets
import evaluate

from bertkit.metrics.squad import squad_scores


class BertkitSquad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v1.1/v2.0 exact match and F1 (English), or JGLUE's character F1 for JSQuAD (lang='ja').",
            citation="Rajpurkar et al., SQuAD, EMNLP 2016; Kurihara et al., JGLUE, LREC 2022",
            inputs_description="predictions: [{id, prediction_text}]; references: [{id, answers: {text, answer_start}}]",
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {"id": datasets.Value("string"),
                               "answers": datasets.Sequence({"text": datasets.Value("string"),
                                                             "answer_start": datasets.Value("int32")})},
            }),
        )

    def _compute(self, predictions, references, lang="en"):
        preds = {p["id"]: p["prediction_text"] for p in predictions}
        golds = {r["id"]: list(r["answers"]["text"]) for r in references}
        return squad_scores(preds, golds, lang=lang)
