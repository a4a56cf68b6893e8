"""Megatron's preprocess_data.py for megabio: the same as `megabio preprocess`.

    python tools/preprocess_data.py --input pubmed.jsonl --json-keys text --vocab vocab.txt \
        --split-sentences --punkt punkt.json --output-prefix pubmed --workers 8
"""

import sys

from megabio.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
