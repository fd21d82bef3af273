"""A Transformer encoder and BERT written out in plain PyTorch, one idea per class, to read and learn from.

Read in this order:

- ``attention.py``: scaled dot-product attention and multi-head attention, with the mask
  convention used throughout: a boolean mask, **True = may attend**.
- ``positional.py``: the sinusoidal positional encoding of the original Transformer.
- ``layers.py``: the position-wise feed-forward network and the (post-LN) encoder layer.
- ``bert.py``: BERT's embeddings, the layer stack and the pooler.
- ``loading.py``: how a ``transformers`` checkpoint's weights map onto these modules.

With a checkpoint's weights, ``BertEncoder`` reproduces ``transformers.BertModel``'s
``last_hidden_state``, ``pooler_output`` and attention weights (tests/test_nn.py). It is written to
be read, not to be fast: it uses none of the fused kernels ``transformers`` can.
"""

from bertkit.nn.attention import MultiHeadAttention, padding_mask, scaled_dot_product_attention
from bertkit.nn.bert import BertEmbeddings, BertEncoder, BertOutput, BertPooler, BertShape
from bertkit.nn.layers import EncoderLayer, FeedForward
from bertkit.nn.positional import SinusoidalPositionalEncoding, sinusoidal_encoding

__all__ = [
    "BertEmbeddings", "BertEncoder", "BertOutput", "BertPooler", "BertShape", "EncoderLayer", "FeedForward",
    "MultiHeadAttention", "SinusoidalPositionalEncoding", "padding_mask", "scaled_dot_product_attention",
    "sinusoidal_encoding",
]
