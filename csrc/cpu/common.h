// Helpers shared by the CPU kernels: argument checks, float staging of half-precision rows,
// and vectorized loops over float buffers with tails.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <vector>

namespace megabio {

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

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* a_name, const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " (", a.scalar_type(), ") and ", b_name, " (",
              b.scalar_type(), ") must have the same dtype");
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
  explicit ThreadPartials(int64_t width) : width_(width), data_(at::get_num_threads() * width, A(0)) {}
  A* get() { return data_.data() + at::get_thread_num() * width_; }
  at::Tensor reduce(at::ScalarType dtype) const {
    auto out = at::zeros({width_}, c10::CppTypeToScalarType<A>::value);
    A* o = out.template data_ptr<A>();
    for (size_t t = 0; t < data_.size() / width_; ++t) {
      at::vec::map2<A>([](auto a, auto b) { return a + b; }, o, o, data_.data() + t * width_, width_);
    }
    return out.to(dtype);
  }

 private:
  int64_t width_;
  std::vector<A> data_;
};

// Grain sizes: enough work per task to amortize scheduling, measured in elements.
inline int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

}  // namespace megabio
