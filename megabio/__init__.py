"""megabio: Megatron-style tensor-parallel training of biomedical BERT encoders.

Importing the package has no side effects; the public pieces live in its submodules:
`megabio.config`, `megabio.parallel`, `megabio.model`, `megabio.kernels`.
"""

__version__ = "0.1.0"
