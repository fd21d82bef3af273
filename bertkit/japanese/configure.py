"""Fit a loaded tokenizer to the recipe's ``japanese:`` section, and refuse at once what cannot run.

- Juman++ words (Kyoto BERT, Waseda ``-with-auto-jumanpp``): ``transformers`` starts the ``jumanpp``
  executable through ``rhoknp`` when the tokenizer loads and only fails on the first text; this
  checks the process is up, so a missing Juman++ is one line before any data is read.
- ``mecab_dic``: the MeCab dictionary of a MeCab-splitting ``BertJapaneseTokenizer``, replacing the
  one its config names (or transformers' default, unidic-lite, where it names none). ``jumandic``
  (NICT's BERT) is not one of transformers' names: it goes in as MeCab's ``-d`` option.
- ``pre_segment``: a ``Segmenter`` attached to the tokenizer (``presegment``), for models trained on
  text segmented with spaces.

What this does not do: tokenise (``api``), or install anything (``DICTIONARY_HINT`` says how).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from bertkit.errors import BertkitError
from bertkit.japanese.presegment import JUMANPP_HINT, Segmenter

DICTIONARY_HINT = "pip install 'bertkit[japanese]' installs ipadic, jumandic, rhoknp and sentencepiece"


def dictionary_option(name: str) -> dict[str, Any]:
    """``mecab_kwargs`` for a dictionary package (ipadic, unidic_lite, unidic, jumandic)."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise BertkitError(f"the MeCab dictionary '{name}' is not installed", DICTIONARY_HINT
                           if name != "unidic" else "pip install unidic && python -m unidic download") from exc
    if name == "jumandic":
        dicdir = module.DICDIR
        return {"mecab_dic": None, "mecab_option": f'-d "{dicdir}" -r "{os.path.join(dicdir, "mecabrc")}"'}
    return {"mecab_dic": name}


def configure(tokenizer: Any, ref: str, mecab_dic: str = "auto", pre_segment: str = "none") -> Any:
    """Apply the ``japanese:`` options to ``tokenizer`` (in place) after the checks; return it."""
    from bertkit.japanese.api import is_japanese_tokenizer

    japanese = is_japanese_tokenizer(tokenizer)
    word_type = getattr(tokenizer, "word_tokenizer_type", None) if japanese and tokenizer.do_word_tokenize else None
    if word_type == "jumanpp":
        juman = getattr(tokenizer.word_tokenizer, "juman", None)
        if juman is None or not juman.is_available():
            raise BertkitError(f"the tokenizer of {ref} splits words with Juman++, and the jumanpp executable "
                               "is not installed (not on PATH)", JUMANPP_HINT)
    if mecab_dic == "auto" and word_type == "mecab":
        named = tokenizer.init_kwargs.get("mecab_kwargs") or {}
        if "mecab_dic" not in named and not named.get("mecab_option"):
            from bertkit import console

            console.log(f"note: the tokenizer config of {ref} names no MeCab dictionary, so transformers uses "
                        "unidic-lite; a model built with IPAdic (Tohoku v1: cl-tohoku/bert-base-japanese, "
                        "-whole-word-masking) needs japanese.mecab_dic=ipadic")
    if mecab_dic != "auto":
        if word_type != "mecab":
            raise BertkitError(f"japanese.mecab_dic={mecab_dic} applies to tokenizers that split words with MeCab, "
                               f"and the tokenizer of {ref} does not", "remove japanese.mecab_dic")
        _use_dictionary(tokenizer, mecab_dic)
    if pre_segment != "none":
        if word_type is not None:
            raise BertkitError(f"japanese.pre_segment={pre_segment}: the tokenizer of {ref} splits words itself "
                               f"({word_type})", "remove japanese.pre_segment")
        segmenter = Segmenter(pre_segment)
        segmenter._start()  # a missing Juman++ stops here, before any data is read
        tokenizer._bertkit_segmenter = segmenter
    return tokenizer


def _use_dictionary(tokenizer: Any, name: str) -> None:
    from transformers.models.bert_japanese.tokenization_bert_japanese import MecabTokenizer

    kwargs = {**(tokenizer.mecab_kwargs or {}), **dictionary_option(name)}
    if kwargs.get("mecab_dic") is not None:
        kwargs.pop("mecab_option", None)
    wt = tokenizer.word_tokenizer
    tokenizer.word_tokenizer = MecabTokenizer(do_lower_case=wt.do_lower_case, never_split=wt.never_split,
                                              normalize_text=wt.normalize_text, **kwargs)
    tokenizer.mecab_kwargs = kwargs
    tokenizer.init_kwargs["mecab_kwargs"] = kwargs  # saved with the tokenizer: the model dir carries it
