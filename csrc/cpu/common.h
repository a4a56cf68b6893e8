// Helpers shared by the CPU kernels: argument checks, float staging of half-precision rows,
// and vectorized loops over float buffers with tails.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/functional_bfloat16.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <array>
#include <tuple>
#include <vector>

#include "../checks.h"

// For the per-vector lambdas handed to the loops below: as calls, their 64-byte vector arguments would
// travel through the stack on every element block (GCC and Clang syntax).
#define MEGABIO_INLINE_LAMBDA __attribute__((always_inline))

namespace megabio {

// Parameter vectors (bias, weight) are padded to a multiple of this many elements, so that a loop over a row
// may load them a whole block past the row's end.
constexpr int64_t kParamPadding = 64;

// Arithmetic type of a kernel: float for float / bfloat16 / float16 storage, double for double.
template <typename T>
using acc_t = at::opmath_type<T>;
template <typename T>
using AccVec = at::vec::Vectorized<acc_t<T>>;

inline void check_cpu_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating-point tensor, got ",
              t.scalar_type());
}

// A row of n elements of T as arithmetic type A: `src` itself when T is A (no copy), else a
// vectorized conversion into `buffer`.
template <typename T, typename A>
inline const A* load_row(const T* src, A* buffer, int64_t n) {
  if constexpr (std::is_same_v<T, A>) {
    return src;
  } else if constexpr (at::is_reduced_floating_point_v<T>) {
    using In = at::vec::Vectorized<T>;
    using Out = at::vec::Vectorized<float>;
    int64_t i = 0;
    for (; i + In::size() <= n; i += In::size()) {
      auto [lo, hi] = at::vec::convert_to_float<T>(In::loadu(src + i));
      lo.store(buffer + i);
      hi.store(buffer + i + Out::size());
    }
    for (; i < n; ++i) buffer[i] = static_cast<A>(src[i]);
    return buffer;
  } else {
    at::vec::convert(src, buffer, n);
    return buffer;
  }
}

// Where to compute an output row of T in type A: the destination itself when T is A, else `buffer`
// (then `store_row` converts it into the destination).
template <typename T, typename A>
inline A* output_row(T* dst, A* buffer) {
  if constexpr (std::is_same_v<T, A>) {
    return dst;
  } else {
    return buffer;
  }
}

// Two float vectors narrowed into one half-precision vector of T (round to nearest even). Built for AVX-512
// BF16, bfloat16 takes one instruction (vcvtne2ps2bf16; it flushes float denormals, below 1.2e-38, to zero)
// instead of ATen's ~7 integer operations per vector.
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> narrow(const at::vec::Vectorized<float>& lo,
                                                const at::vec::Vectorized<float>& hi) {
#if defined(CPU_CAPABILITY_AVX512) && defined(__AVX512BF16__)
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return at::vec::Vectorized<T>((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
#endif
  return at::vec::convert_from_float<T>(lo, hi);
}

// dst[i] = op(src[i]) for a row of n arithmetic values into storage type T (narrowed in registers; two float
// vectors make one half-precision vector). `op(V) -> V`.
template <typename T, typename A, typename Op>
C10_ALWAYS_INLINE void map_into(Op op, T* dst, const A* src, int64_t n) {
  if constexpr (at::is_reduced_floating_point_v<T>) {
    using Out = at::vec::Vectorized<T>;
    using In = at::vec::Vectorized<float>;
    constexpr int64_t k = In::size();
    for (int64_t i = 0; i < n; i += 2 * k) {
      const int64_t count = std::min<int64_t>(2 * k, n - i);
      if (count == 2 * k) {
        narrow<T>(op(In::loadu(src + i)), op(In::loadu(src + i + k))).store(dst + i);
      } else {  // the last, partial block
        const In lo = op(In::loadu(src + i, std::min(k, count)));
        const In hi = count > k ? op(In::loadu(src + i + k, count - k)) : In(0.f);
        narrow<T>(lo, hi).store(dst + i, count);
      }
    }
  } else if constexpr (std::is_same_v<T, A>) {
    at::vec::map(op, dst, src, n);
  } else {
    static_assert(std::is_same_v<T, A>, "map_into: no conversion from the arithmetic type to T");
  }
}

// Completes a row computed at output_row: converts it into the destination when that is not the row itself.
template <typename T, typename A>
inline void store_row(const A* src, T* dst, int64_t n) {
  if constexpr (!std::is_same_v<T, A>) {
    map_into([](auto v) MEGABIO_INLINE_LAMBDA { return v; }, dst, src, n);
  }
}

// A small parameter vector (bias, LayerNorm weight) as arithmetic type A, converted once per call.
template <typename T>
inline std::vector<acc_t<T>> to_acc_vector(const at::Tensor& t) {
  std::vector<acc_t<T>> out((t.numel() + kParamPadding - 1) / kParamPadding * kParamPadding, acc_t<T>(0));
  at::vec::convert(t.contiguous().data_ptr<T>(), out.data(), t.numel());
  return out;
}

// exp(x) for float vectors, inlined (ATen's Vectorized<float>::exp_u20 is an out-of-line call, and Sleef's
// exp_u10 costs twice as much): x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-6 Taylor polynomial
// (relative error < 2e-7), scaled by 2^n with AVX-512's scalef. exp(-inf) = 0 exactly; NaN propagates.
template <typename V>
C10_ALWAYS_INLINE V fast_exp(V x) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<V, at::vec::Vectorized<float>>) {
    const __m512 lowest = _mm512_set1_ps(-87.33654f), highest = _mm512_set1_ps(88.72283f);
    const __m512 v = _mm512_min_ps(highest, _mm512_max_ps(lowest, x));  // constant first: NaN passes through
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), v);  // ln2 in two parts: exact n*hi
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    const __mmask16 underflow = _mm512_cmp_ps_mask(x, lowest, _CMP_LT_OQ);
    return _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), underflow, _mm512_setzero_ps());
  }
#endif
  // exp_u20 turns NaN into inf on AVX2: put NaN back so that a NaN logit still shows in the loss.
  return V::blendv(x.exp_u20(), x, x.isnan());
}

// 1 / x for float vectors from AVX-512's 14-bit reciprocal estimate and one Newton step (relative error
// ~1e-7; a quarter less time than a division here), for the finite, positive 1 + ... denominators of
// the GeLU kernels.
template <typename V>
C10_ALWAYS_INLINE V fast_reciprocal(V x) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<V, at::vec::Vectorized<float>>) {
    const __m512 estimate = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(estimate, _mm512_fnmadd_ps(x, estimate, _mm512_set1_ps(2.f)));
  }
#endif
  return V(typename V::value_type(1)) / x;
}

// Reduces op(inputs[i]...) over i < n with `combine` (identity `init`), vectorized with four
// independent accumulators so that the combines pipeline instead of waiting on one another.
template <typename A, typename Combine, typename Op, typename... In>
inline A reduce_map(Combine combine, A init, Op op, int64_t n, const In*... inputs) {
  using V = at::vec::Vectorized<A>;
  constexpr int64_t k = V::size();
  V acc0(init), acc1(init), acc2(init), acc3(init);
  int64_t i = 0;
  for (; i + 4 * k <= n; i += 4 * k) {
    acc0 = combine(acc0, op(V::loadu(inputs + i)...));
    acc1 = combine(acc1, op(V::loadu(inputs + i + k)...));
    acc2 = combine(acc2, op(V::loadu(inputs + i + 2 * k)...));
    acc3 = combine(acc3, op(V::loadu(inputs + i + 3 * k)...));
  }
  for (; i + k <= n; i += k) acc0 = combine(acc0, op(V::loadu(inputs + i)...));
  if (i < n) {
    const int64_t rest = n - i;
    acc1 = combine(acc1, V::set(V(init), op(V::loadu(inputs + i, rest)...), rest));
  }
  const V total = combine(combine(acc0, acc1), combine(acc2, acc3));
  return at::vec::vec_reduce_all<A>([&](V a, V b) { return combine(a, b); }, total);
}

// `count` half-precision elements at p (at most one Vectorized<T>) as two float vectors, zeros past `count`.
template <typename T>
C10_ALWAYS_INLINE std::tuple<at::vec::Vectorized<float>, at::vec::Vectorized<float>> load_widened(const T* p,
                                                                                                 int64_t count) {
  using VT = at::vec::Vectorized<T>;
  return at::vec::convert_to_float<T>(count == VT::size() ? VT::loadu(p) : VT::loadu(p, count));
}

// Calls f(j, v, count) for the arithmetic vectors of a row of n elements of storage type T, in order: v holds
// elements j .. j + count - 1 (zeros past them), half precision widened in registers.
template <typename T, typename F>
C10_ALWAYS_INLINE void for_each_vector(const T* row, int64_t n, F f) {
  using V = AccVec<T>;
  constexpr int64_t k = V::size();
  if constexpr (at::is_reduced_floating_point_v<T>) {
    for (int64_t j = 0; j < n; j += 2 * k) {
      const int64_t count = std::min<int64_t>(2 * k, n - j);
      const auto [lo, hi] = load_widened(row + j, count);
      f(j, lo, std::min(k, count));
      if (count > k) f(j + k, hi, count - k);
    }
  } else {
    for (int64_t j = 0; j < n; j += k) {
      const int64_t count = std::min(k, n - j);
      f(j, count == k ? V::loadu(row + j) : V::loadu(row + j, count), count);
    }
  }
}

// For i in blocks of two arithmetic vectors along a row of n elements of storage type T:
// {outs[0][i..], ...} = op(i, rows[i..]...), computed in acc_t<T>. Half-precision rows are converted in
// registers (one T vector is two float vectors), never staged through memory; the last block is loaded and
// stored partially. `op(i, V... values) -> std::array<V, M>` gets the element offset i so it can read
// (padded) parameter vectors there.
template <typename T, size_t M, typename Op, typename... Rows>
C10_ALWAYS_INLINE void map_row_to(Op op, const std::array<T*, M>& outs, int64_t n, const Rows*... rows) {
  using V = AccVec<T>;
  constexpr int64_t k = V::size();
  for (int64_t i = 0; i < n; i += 2 * k) {
    const int64_t count = std::min<int64_t>(2 * k, n - i);
    if constexpr (at::is_reduced_floating_point_v<T>) {
      const std::array<V, M> lo = op(i, std::get<0>(load_widened(rows + i, count))...);
      const std::array<V, M> hi = op(i + k, std::get<1>(load_widened(rows + i, count))...);
      for (size_t m = 0; m < M; ++m) {
        const auto result = narrow<T>(lo[m], hi[m]);
        count == 2 * k ? result.store(outs[m] + i) : result.store(outs[m] + i, count);
      }
    } else {
      const int64_t first = std::min(k, count), second = count - first;
      auto load = [&](const T* p, int64_t c) MEGABIO_INLINE_LAMBDA { return c == k ? V::loadu(p) : V::loadu(p, c); };
      auto store = [&](const std::array<V, M>& values, int64_t at, int64_t c) MEGABIO_INLINE_LAMBDA {
        for (size_t m = 0; m < M; ++m) c == k ? values[m].store(outs[m] + at) : values[m].store(outs[m] + at, c);
      };
      store(op(i, load(rows + i, first)...), i, first);
      if (second > 0) store(op(i + k, load(rows + i + k, second)...), i + k, second);
    }
  }
}

// map_row_to with one output: out[i..] = op(i, rows[i..]...), `op(i, V... values) -> V`.
template <typename T, typename Op, typename... Rows>
C10_ALWAYS_INLINE void map_row(Op op, T* out, int64_t n, const Rows*... rows) {
  map_row_to([&op](int64_t i, auto... values) MEGABIO_INLINE_LAMBDA { return std::array{op(i, values...)}; },
             std::array<T*, 1>{out}, n, rows...);
}

template <typename A, typename Op, typename... In>
inline A sum_map(Op op, int64_t n, const In*... inputs) {
  return reduce_map<A>([](auto a, auto b) { return a + b; }, A(0), op, n, inputs...);
}

// sum_i a[i] * b[i] over two rows of n elements of storage type T, in acc_t<T>; half-precision rows are
// widened in registers.
template <typename T>
inline acc_t<T> dot_row(const T* a, const T* b, int64_t n) {
  using A = acc_t<T>;
  using V = AccVec<T>;
  if constexpr (at::is_reduced_floating_point_v<T>) {
    constexpr int64_t k = V::size();
    V acc0(A(0)), acc1(A(0));
    for (int64_t i = 0; i < n; i += 2 * k) {
      const int64_t count = std::min<int64_t>(2 * k, n - i);
      const auto [a0, a1] = load_widened(a + i, count);
      const auto [b0, b1] = load_widened(b + i, count);
      acc0 = at::vec::fmadd(a0, b0, acc0);
      acc1 = at::vec::fmadd(a1, b1, acc1);
    }
    return at::vec::vec_reduce_all<A>([](V x, V y) { return x + y; }, acc0 + acc1);
  } else {
    return reduce_map<A>([](V x, V y) { return x + y; }, A(0), [](V x, V y) { return x * y; }, n, a, b);
  }
}

// Per-thread scratch rows of type A, sized once per call.
template <typename A>
class ThreadBuffers {
 public:
  ThreadBuffers(int64_t rows_per_thread, int64_t width)
      : width_(width), rows_(rows_per_thread), data_(at::get_num_threads() * rows_per_thread * width) {}
  A* get(int64_t row) { return data_.data() + (at::get_thread_num() * rows_ + row) * width_; }

 private:
  int64_t width_, rows_;
  std::vector<A> data_;
};

// Per-thread partial sums [threads, width], zero-initialised; `reduce` sums them into a tensor.
template <typename A>
class ThreadPartials {
 public:
  explicit ThreadPartials(int64_t width)
      : width_(width), stride_((width + 2 * kParamPadding - 1) / kParamPadding * kParamPadding),
        data_(at::get_num_threads() * stride_, A(0)) {}
  // This thread's partial row, padded by at least kParamPadding zeros: an update may run a vector past
  // any column.
  A* get() { return data_.data() + at::get_thread_num() * stride_; }
  at::Tensor reduce(at::ScalarType dtype) const {
    auto out = at::zeros({width_}, c10::CppTypeToScalarType<A>::value);
    A* o = out.template data_ptr<A>();
    for (size_t t = 0; t < data_.size() / stride_; ++t) {
      at::vec::map2<A>([](auto a, auto b) { return a + b; }, o, o, data_.data() + t * stride_, width_);
    }
    return out.to(dtype);
  }

 private:
  int64_t width_, stride_;
  std::vector<A> data_;
};

// Grain sizes: enough work per task to amortize scheduling, measured in elements.
inline int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

}  // namespace megabio
