"""bertkit: fine-tune, evaluate and inspect BERT-family models from YAML recipes."""

__version__ = "0.1.0"
