"""Entry point for torchrun, as Megatron-LM's pretrain_bert.py:

    torchrun --nproc-per-node 8 examples/pretrain_bert.py --preset 345m --vocab-file VOCAB --data-path PREFIX ...

takes exactly the flags of `megabio pretrain` (see `megabio pretrain --help`).
"""

import sys

from megabio.cli.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
