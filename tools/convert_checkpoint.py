"""Convert checkpoints between megabio and Hugging Face, or reshard TP: the same as `megabio convert`.

    python tools/convert_checkpoint.py --from hf-bert --to megabio --input bert-base-cased --output bert-mb \
        --target-tensor-model-parallel-size 2
"""

import sys

from megabio.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
