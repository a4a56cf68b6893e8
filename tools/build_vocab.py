"""Build a BERT WordPiece vocabulary with SentencePiece: the same as `megabio vocab build`.

    python tools/build_vocab.py --input pubmed.txt --vocab-size 30000 --cased --output-dir bio-30k-cased
"""

import sys

from megabio.cli import main

if __name__ == "__main__":
    sys.exit(main(["vocab", "build", *sys.argv[1:]]))
