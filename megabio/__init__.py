"""megabio: Megatron-style tensor-parallel training of biomedical BERT encoders.

Importing the package has no side effects; the public pieces live in its submodules:
`megabio.config`, `megabio.parallel`, `megabio.model`, `megabio.kernels`.
"""

__version__ = "0.1.0"


def load_pretrained(path, parallel_state=None, model_class=None, **options):
    """(model, tokenizer, info) from a megabio or Hugging Face checkpoint directory, as `model_class`
    (default BertForPretraining); see `megabio.convert.load_pretrained`."""
    from megabio.convert import load_pretrained as load

    if model_class is not None:
        options["model_class"] = model_class
    return load(path, parallel_state, **options)
