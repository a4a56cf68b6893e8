#!/usr/bin/env bash
# Rebuild the Punkt model megabio ships (megabio/tokenizer/punkt_biomedical.json.gz) from PubMed abstracts
# and PMC full text, leaving out the PMIDs of benchmark test sets.
#
#   tools/build_punkt_model.sh ../shared/data/pretrain
set -euo pipefail
data=${1:?usage: $0 PRETRAIN_DATA_DIR (with CHR-pubmed-abstracts, CRAFT-pmc-fulltext, ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt)}
out=$(dirname "$0")/../megabio/tokenizer/punkt_biomedical.json.gz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m megabio splitter train --input "$data/CHR-pubmed-abstracts" "$data/CRAFT-pmc-fulltext" \
  --exclude-pmids "$data/ALL_PMIDS_OF_BENCHMARK_TEST_SETS.txt" --output "$tmp/punkt.json"
gzip -9 -c "$tmp/punkt.json" > "$tmp/punkt.json.gz"
mv "$tmp/punkt.json.gz" "$out"
