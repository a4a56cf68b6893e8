"""WordPiece tokenization (HF tokenizers) and SentencePiece-based vocabulary building."""
