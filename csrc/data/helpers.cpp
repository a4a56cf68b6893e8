// BERT sample mapping (pybind11): which consecutive sentences of which document form each training
// sample, as Megatron-LM's helpers build_mapping does, with a SplitMix64 generator so that the pure-Python
// reference in megabio/data/sample_mapping.py produces the same array bit for bit.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace py = pybind11;

namespace {

struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t operator()() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
};

// Target length of the next sample: max_seq_length, or with probability 1/short_seq_ratio a short one
// in [2, max_seq_length].
int64_t target_length(SplitMix64& rng, int64_t short_seq_ratio, int64_t max_seq_length) {
  const uint64_t r = rng();
  if (short_seq_ratio > 0 && r % static_cast<uint64_t>(short_seq_ratio) == 0) {
    return 2 + static_cast<int64_t>(r % static_cast<uint64_t>(max_seq_length - 1));
  }
  return max_seq_length;
}

py::array_t<int64_t> build_mapping(py::array_t<int64_t, py::array::c_style | py::array::forcecast> document_index,
                                   py::array_t<int32_t, py::array::c_style | py::array::forcecast> sizes,
                                   int64_t num_epochs, int64_t max_num_samples, int64_t max_seq_length,
                                   int64_t short_seq_ratio, uint64_t seed, int64_t min_num_sentences,
                                   int64_t long_sentence_length) {
  if (max_seq_length < 3) throw std::invalid_argument("max_seq_length must be at least 3");
  const auto docs = document_index.unchecked<1>();
  const auto lengths = sizes.unchecked<1>();
  std::vector<int64_t> samples;  // (first sentence, end sentence, target length) triples
  SplitMix64 rng(seed);
  for (int64_t epoch = 0; epoch < num_epochs; ++epoch) {
    for (py::ssize_t doc = 0; doc + 1 < docs.shape(0); ++doc) {
      if (max_num_samples > 0 && static_cast<int64_t>(samples.size() / 3) >= max_num_samples) break;
      const int64_t first = docs(doc), last = docs(doc + 1);
      if (last - first < min_num_sentences) continue;
      bool has_long = false;
      for (int64_t s = first; s < last; ++s) has_long |= lengths(s) > long_sentence_length;
      if (has_long) continue;  // a sentence that cannot fit would spoil every sample of the document
      int64_t start = first, length = 0, count = 0, remaining = last - first;
      int64_t target = target_length(rng, short_seq_ratio, max_seq_length);
      for (int64_t s = first; s < last; ++s) {
        length += lengths(s);
        ++count;
        --remaining;
        const bool full = length >= target && remaining > 1 && count >= min_num_sentences;
        if (full || remaining == 0) {
          if (count >= min_num_sentences) {
            samples.insert(samples.end(), {start, s + 1, target});
          }
          start = s + 1;
          length = count = 0;
          target = target_length(rng, short_seq_ratio, max_seq_length);
        }
      }
    }
  }
  const int64_t n = static_cast<int64_t>(samples.size() / 3);
  SplitMix64 shuffle(seed + 1);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    const int64_t j = static_cast<int64_t>(shuffle() % static_cast<uint64_t>(i + 1));
    for (int k = 0; k < 3; ++k) std::swap(samples[3 * i + k], samples[3 * j + k]);
  }
  py::array_t<int64_t> result({n, static_cast<int64_t>(3)});
  std::copy(samples.begin(), samples.end(), result.mutable_data());
  return result;
}

}  // namespace

PYBIND11_MODULE(_helpers, m) {
  m.doc() = "megabio data helpers";
  m.def("build_mapping", &build_mapping, py::arg("document_index"), py::arg("sizes"), py::arg("num_epochs"),
        py::arg("max_num_samples"), py::arg("max_seq_length"), py::arg("short_seq_ratio"), py::arg("seed"),
        py::arg("min_num_sentences"), py::arg("long_sentence_length"),
        "BERT samples as an int64 array [n, 3] of (first sentence, end sentence, target length), shuffled.");
}
