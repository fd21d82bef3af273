"""Token classification (``task: ner``): tagged words or character spans in, entities out.

Two shapes of data (``clean_split`` brings every split to one of them):

- **words with tags** (``tokens`` + ``tags``): CoNLL column files, JSON/JSONL rows, hub datasets whose
  tag feature is a ``ClassLabel`` sequence (conll2003's ``ner_tags``; the names come from the
  dataset's features), or integer tags named by ``ner.label_names``. Gold tags may be written in
  IOB1, IOB2, BIOES or IO (``ner.tag_scheme``, detected by default) and are rewritten into the
  scheme the model learns (``ner.label_scheme``: IOB2 or BIOES).
- **character spans** (``text`` + ``entities``: ``[{"span": [start, end], "type": ...}]``). The words
  are the tokenizer's own (``bertkit.japanese.align``: MeCab words for a Tohoku BERT, pre-tokenizer
  words for a fast tokenizer); an entity labels the words of every token that overlaps it. An
  training example where an entity starts or ends inside a token or a word is tokenised again, cut
  at its entity boundaries (``bertkit.tasks.boundaries``), so that its labels say exactly what the
  gold says; ``note_cuts`` counts them. Evaluation and prediction read the text as it comes, so there
  an entity boundary inside a token or word stays out of reach (the tokenizer's ceiling; counted). Spans that are out
  of range, overlap another or cover no token are counted and shown by ``validate`` (``note_*``
  keys of the length report), never silently moved.

Every sub-token of a word carries its word's label, B- turned into I- after the first
(``ner.label_all_tokens``, as transformers' ``run_ner`` can; false labels only the first). A word's
scores are its sub-tokens' mean (``ner.aggregation``), and the tags are the best sequence the label
scheme allows (``ner.decoding: viterbi``), so no entity starts with I-. A sentence longer than ``max_length`` becomes
overlapping windows (``ner.stride`` tokens of overlap); predictions are merged back token by token,
each token taken from the window where it sits most centrally, so nothing is truncated.

Metrics are computed on whole examples after merging: entity precision / recall / F1 by seqeval
(through ``bertkit.metrics.entities``; ``ner.strict`` for its strict mode) over words, or over exact
character spans for span data, plus token (word) accuracy. ``oracle`` pushes gold annotations through
the same labelling, windowing, merging and decoding, to show what the representation can reproduce.

Not handled: nested or overlapping entities (of two overlapping spans the later is dropped and
counted), discontinuous entities, tokenizers whose special tokens are not BERT's ``[CLS] .. [SEP]``.

The package, lower modules first (a module imports only those above it):

- ``spec``: ``Options`` (registered as the recipe's ``ner:`` section on import), ``Spec``, model class, best metric
- ``data``: raw rows -> words with tags or text with spans; the label set (``prepare``)
- ``featurize``: tokens with word ids, gold spans and tags -> labels, windows, the length report
- ``decoding``: merged window scores -> word tags -> entities, in characters or words
- ``scoring``: training metrics, the report, predictions.jsonl rows, ``predict_batch``, card notes
- ``roundtrip``: ``oracle``, gold pushed through the same path with no model

This module only re-exports the task interface (``bertkit.tasks.get("ner")`` returns it) and the
helpers tests and bench scripts use; it holds no code of its own.
"""

from bertkit.tasks.ner.spec import PIPELINE_TAG, Options, Spec, best_metric, model_class
from bertkit.tasks.ner.data import (TAG_COLUMNS, _form, _labels, _span_entities, _string_tags, _words, clean_split,
                                    prepare, spec_from_model, unlabeled_text)
from bertkit.tasks.ner.featurize import (Encoded, _gold_tags, _label_spans, _Problems, collator, cut_at_boundaries,
                                         encode_texts, encode_words, feature_rows, features, gold_spans, length_report,
                                         place_spans, token_labels, windows)
from bertkit.tasks.ner.decoding import (Scored, _mean, _softmax, _token_range, char_span, decode, merge,
                                        predict_entities, to_characters, to_words, word_tags)
from bertkit.tasks.ner.scoring import (_char_spans, _char_tags, _decoded, _eval_aggregation, card_notes,
                                       compute_metrics, infer, prediction_rows, predict_batch, report)
from bertkit.tasks.ner.roundtrip import oracle
