// Dropout keep-masks from Philox4x32-10 (Salmon et al., 2011; the generator behind torch's CUDA dropout),
// sixteen counters at a time with AVX-512 and one at a time otherwise: the same numbers either way.
//
// A mask is made in chunks of kPhiloxChunk elements, chunk c drawing from counters (block, 0, c_lo, c_hi)
// under key (seed_lo, seed_hi), so a mask depends only on the seed and element index, never on threads.
// Within a chunk, element e = 128 g + 64 h + 16 w + l takes the 16-bit half h of word w of block 16 g + l:
// sixteen consecutive elements then come from one word vector of sixteen blocks.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#if defined(CPU_CAPABILITY_AVX512)
#include <immintrin.h>
#endif

namespace megabio {

constexpr int64_t kPhiloxChunk = 4096;
constexpr int64_t kPhiloxGroup = 128;  // elements per sixteen blocks (four words, two halves each)

constexpr uint32_t kPhiloxMul0 = 0xD2511F53, kPhiloxMul1 = 0xCD9E8D57;
constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9, kPhiloxWeyl1 = 0xBB67AE85;

// Replaces `counter` by the four output words of its Philox4x32-10 block under key (key0, key1).
inline void philox_block(uint32_t counter[4], uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = static_cast<uint64_t>(kPhiloxMul0) * counter[0];
    const uint64_t product1 = static_cast<uint64_t>(kPhiloxMul1) * counter[2];
    const uint32_t next[4] = {static_cast<uint32_t>(product1 >> 32) ^ counter[1] ^ key0,
                              static_cast<uint32_t>(product1),
                              static_cast<uint32_t>(product0 >> 32) ^ counter[3] ^ key1,
                              static_cast<uint32_t>(product0)};
    for (int i = 0; i < 4; ++i) counter[i] = next[i];
    key0 += kPhiloxWeyl0;
    key1 += kPhiloxWeyl1;
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// The high words of sixteen 32x32-bit products: even lanes from one 32x32->64 multiply, odd from another.
C10_ALWAYS_INLINE __m512i philox_mulhi(__m512i a, __m512i m) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}
#endif

// keep[e] = (uniform 16-bit draw of element e) >= threshold, for the n <= kPhiloxChunk elements of `chunk`:
// probability 1 - threshold / 65536.
inline void philox_keep_mask(uint64_t seed, uint64_t chunk, uint32_t threshold, int64_t n, uint8_t* keep) {
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t chunk_lo = static_cast<uint32_t>(chunk), chunk_hi = static_cast<uint32_t>(chunk >> 32);
  int64_t first = 0;
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i mul0 = _mm512_set1_epi32(static_cast<int>(kPhiloxMul0));
  const __m512i mul1 = _mm512_set1_epi32(static_cast<int>(kPhiloxMul1));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i limit = _mm512_set1_epi32(static_cast<int>(threshold));
  const __m128i ones = _mm_set1_epi8(1);
  const __m512i low_half = _mm512_set1_epi32(0xFFFF);
  __m512i round_key0[10], round_key1[10];
  for (uint32_t round = 0, k0 = key0, k1 = key1; round < 10; ++round, k0 += kPhiloxWeyl0, k1 += kPhiloxWeyl1) {
    round_key0[round] = _mm512_set1_epi32(static_cast<int>(k0));
    round_key1[round] = _mm512_set1_epi32(static_cast<int>(k1));
  }
  for (; first + kPhiloxGroup <= n; first += kPhiloxGroup) {
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first / kPhiloxGroup * 16)), lanes);
    __m512i c1 = _mm512_setzero_si512();
    __m512i c2 = _mm512_set1_epi32(static_cast<int>(chunk_lo)), c3 = _mm512_set1_epi32(static_cast<int>(chunk_hi));
    for (int round = 0; round < 10; ++round) {
      const __m512i hi0 = philox_mulhi(c0, mul0), lo0 = _mm512_mullo_epi32(c0, mul0);
      const __m512i hi1 = philox_mulhi(c2, mul1), lo1 = _mm512_mullo_epi32(c2, mul1);
      c0 = _mm512_ternarylogic_epi32(hi1, c1, round_key0[round], 0x96);  // three-way xor
      c1 = lo1;
      c2 = _mm512_ternarylogic_epi32(hi0, c3, round_key1[round], 0x96);
      c3 = lo0;
    }
    const __m512i words[4] = {c0, c1, c2, c3};
    for (int half = 0; half < 2; ++half) {
      for (int w = 0; w < 4; ++w) {
        const __m512i draw = half ? _mm512_srli_epi32(words[w], 16) : _mm512_and_si512(words[w], low_half);
        const __mmask16 kept = _mm512_cmpge_epu32_mask(draw, limit);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(keep + first + 64 * half + 16 * w),
                         _mm_maskz_mov_epi8(kept, ones));
      }
    }
  }
#endif
  // The rest of the chunk (all of it without AVX-512), block by block.
  for (int64_t group = first / kPhiloxGroup; group * kPhiloxGroup < n; ++group) {
    for (int lane = 0; lane < 16; ++lane) {
      uint32_t words[4] = {static_cast<uint32_t>(group * 16 + lane), 0, chunk_lo, chunk_hi};
      philox_block(words, key0, key1);
      for (int half = 0; half < 2; ++half) {
        for (int w = 0; w < 4; ++w) {
          const int64_t e = group * kPhiloxGroup + 64 * half + 16 * w + lane;
          if (e < n) keep[e] = ((words[w] >> (16 * half)) & 0xFFFF) >= threshold;
        }
      }
    }
  }
}

}  // namespace megabio
