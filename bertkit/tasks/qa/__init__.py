"""Extractive question answering (SQuAD v1.1 / v2.0, JSQuAD): answers are spans of the context.

Each example is ``[CLS] question [SEP] context-window [SEP]``. Contexts longer than ``max_length``
are read in overlapping windows (``qa.doc_stride`` tokens of overlap, as Hugging Face's ``run_qa``);
a window's start/end labels point at the answer's first and last token, or at ``[CLS]`` (position 0)
when the answer is not wholly inside it. Token ids and character offsets come from
``bertkit.japanese.align``, so the slow Tohoku ``BertJapaneseTokenizer`` works like a fast tokenizer
and every offset indexes the ORIGINAL context: answers are cut from the user's text as it was, never
from a normalised copy. A question keeps at most half the window (longer ones are cut and counted);
consecutive windows share at most half a window. A literal ``[SEP]`` inside a context (JSQuAD's title
separator) becomes the ``[SEP]`` token, as in JGLUE's own fine-tuning, and is still context.

Training labels are exact: when a training question's gold answer starts or ends inside a token
(``8th`` in ``18th``), that question's context is tokenised in pieces cut at the answer's boundaries
(``bertkit.tasks.boundaries``), so its start/end tokens decode to exactly the gold text; every other
question keeps the alignment its context shares with the paragraph's other questions. Evaluation and
``predict`` read contexts as they come, so there such an answer stays out of reach (the tokenizer's
ceiling).

Decoding an example looks at all its windows: the ``n_best`` best starts and ends of each window,
inside the context only (never the question or a special token), end not before start, at most
``max_answer_length`` tokens; equal character spans from overlapping windows count once, with their
best score. With ``version_2_with_negative`` the null answer ``""`` scores the smallest
``[CLS]``-``[CLS]`` logit sum over the windows and wins when it beats the best span by more than
``null_score_diff_threshold``. ``score`` is always a start+end logit sum; ``probability`` is its
softmax share within the example's n-best list.

The Trainer's per-epoch ``compute_metrics`` sees only logits and labels, so ``features`` keeps the
validation windows (with their contexts and gold answers) in the ``Spec``, and evaluation windows
carry start/end labels like training ones, which gives an eval loss and makes the Trainer call
``compute_metrics`` at all. Best-model selection therefore uses the real SQuAD F1. (With bertkit's
default ``train_sampling_strategy=group_by_length`` the Trainer also shuffles evaluation batches by
length; ``_eval_order`` rebuilds that order and checks it against the returned labels.)

Not handled: answers that are not verbatim spans of the context (yes/no, free-form); tokenizers
whose layout is not BERT's ``[CLS] A [SEP] B [SEP]`` (see ``bertkit.encoding``); contexts so long
that holding their windows' offsets in memory matters (book-length documents).

The package, lower modules first (a module imports only those above it):

- ``spec``: ``Options`` (registered as the recipe's ``qa:`` section on import), ``Spec``, model class,
  best metric, card notes
- ``data``: column checks, empty rows, unique ids, gold answers checked against their context
- ``featurize``: windows over each context, start/end labels, the length report
- ``decoding``: ``infer`` and per-example n-best answers from all windows' logits
- ``scoring``: SQuAD EM/F1, ``compute_metrics``, predictions.jsonl rows, artifacts, ``predict_batch``
- ``roundtrip``: ``oracle``, gold answers pushed through labels and back with no model

This module only re-exports the task interface (``bertkit.tasks.get("qa")`` returns it) and the
helpers tests and bench scripts use; it holds no code of its own.
"""

from bertkit.tasks.qa.spec import INPUT_COLUMNS, PIPELINE_TAG, Options, Spec, best_metric, card_notes, model_class
from bertkit.tasks.qa.data import (_check_answers, _golds, _log, _place, _replace_column, _unique, answer_pairs,
                                   clean_split, prepare, spec_from_model, unlabeled_text)
from bertkit.tasks.qa.featurize import (Encoded, Window, _answer_cuts, _cut_at_answers, _first_span, _length_report,
                                        _metric_lang, _split_golds, answer_tokens, collator, encode, features, label,
                                        span_chars)
from bertkit.tasks.qa.decoding import Outputs, _outputs_from, _softmax, decode, decode_example, infer
from bertkit.tasks.qa.scoring import (_eval_order, _scores, artifacts, compute_metrics, prediction_rows, predict_batch,
                                     report)
from bertkit.tasks.qa.roundtrip import _why, oracle
