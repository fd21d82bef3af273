"""Character offsets and word ids for Japanese BERT tokenizers, plus a fast path.

``transformers.BertJapaneseTokenizer`` (the Tohoku models: MeCab words, then WordPiece or character
subwords) is a slow tokenizer: it has no ``offset_mapping`` and no ``word_ids()``, which NER label
alignment, QA answer spans and whole-word masking all need. ``align`` gives, for one text, exactly
the ids the tokenizer produces, the span of the ORIGINAL text every token came from, and the index
of the word it belongs to; ``token_ids_batch`` the ids alone, fast.

Read in this order (each module imports only the ones above it):

- ``spans.py``: the ``Aligned`` result; strings whose characters remember their original spans
  through NFKC / NFC / lower-casing (``_Tracked`` for the slow alignment, ``_NormMap`` for the fast path).
- ``words.py``: the word splitters (MeCab with the tokenizer's dictionary, the basic splitter) and
  the MeCab option string the fast path's taggers are built with.
- ``slow.py``: the slow alignment, the tokenizer mirrored step by step; exact for every supported config.
- ``pieces.py``: ``_PieceTokens``, WordPiece tokens of MeCab-parsed text from a word cache, built from
  picklable data so a helper process can build it too.
- ``mecab_pool.py``: MeCab (and, for ids, the tokens) in helper processes for big batches
  (``BERTKIT_JA_WORKERS``).
- ``fast.py``: the fast path (mecab + wordpiece only), checked against the slow alignment first.
- ``presegment.py``: words of raw text by Juman++ or MeCab for tokenizers that do not find Japanese
  words themselves: text segmented with spaces (``japanese.pre_segment``) with offsets mapped back,
  and MeCab word ids for SentencePiece / BPE tokenizers on Japanese text.
- ``api.py``: the entry points, choosing native offsets (fast tokenizers), pre-segmentation, the fast
  path or the slow one.
- ``configure.py``: the recipe's ``japanese:`` options applied to a loaded tokenizer (MeCab dictionary,
  pre-segmentation), and the one-line refusals (no Juman++, a missing dictionary).

Constants are read in the module that defines them (``api.MAX_TEXT_CHARS``, ``mecab_pool.MIN_CHARS``
and ``START_CHARS``): change them there; the copies re-exported here are for reading.

Not handled: the sudachi word tokenizer (``BertkitError``); other slow tokenizers (``BertkitError``:
use a fast tokenizer, which has native offsets).
"""

from bertkit.japanese.api import (
    MAX_TEXT_CHARS,
    align,
    align_batch,
    is_japanese_tokenizer,
    token_ids_batch,
    word_spans,
)
from bertkit.japanese.fast import _SELF_CHECK, _fast_path_for  # noqa: F401  (names the one-module japanese.py had)
from bertkit.japanese.slow import _slow_align  # noqa: F401
from bertkit.japanese.spans import Aligned

__all__ = ["MAX_TEXT_CHARS", "Aligned", "align", "align_batch", "is_japanese_tokenizer", "token_ids_batch", "word_spans"]
