"""megabio: Megatron-style tensor-parallel training of biomedical BERT encoders.

Importing the package has no side effects; the public pieces live in its submodules:
`megabio.config`, `megabio.parallel`, `megabio.model`, `megabio.kernels`.
"""

__version__ = "0.1.0"


def load_pretrained(path, parallel_state=None):
    """(BertForPretraining, tokenizer) from a megabio or Hugging Face checkpoint directory; see
    `megabio.convert.load_pretrained`."""
    from megabio.convert import load_pretrained as load

    return load(path, parallel_state)
